//! Static websites from containers (Swift's `staticweb` middleware), for
//! anonymous reads of a public container or requests with `X-Web-Mode:
//! true`, when the container has any of `X-Container-Meta-Web-Index`,
//! `-Web-Listings`, `-Web-Listings-CSS`, `-Web-Error`:
//!
//! - a directory path (the container, or a name ending in `/`) serves its
//!   index object, else an HTML listing when listings are on;
//! - a name that is not an object but a directory redirects (301) to the
//!   name with `/`;
//! - a 404 serves the `404<Web-Error>` object, with status 404.

use super::error::SwiftError;
use crate::proxy::containers::{ListQuery, ListTarget};
use crate::proxy::objects::{ObjectError, ObjectPath, ReadObject};
use crate::proxy::ProxyState;
use crate::records::ListingEntry;
use http::{HeaderMap, Response, StatusCode};
use service_kit::http_util::{full, header_str, set_header, xml_escape, Body};

const INDEX: &str = "x-container-meta-web-index";
const LISTINGS: &str = "x-container-meta-web-listings";
const LISTINGS_CSS: &str = "x-container-meta-web-listings-css";
const ERROR: &str = "x-container-meta-web-error";

/// A container's website settings.
pub struct Site {
    index: Option<String>,
    listings: bool,
    css: Option<String>,
    error: Option<String>,
}

impl Site {
    /// The website a container's headers make, if any.
    pub fn of(container: &HeaderMap) -> Option<Site> {
        let get = |n| {
            header_str(container, n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let site = Site {
            index: get(INDEX),
            listings: get(LISTINGS).is_some_and(|v| service_kit::http_util::truthy(&v)),
            css: get(LISTINGS_CSS),
            error: get(ERROR),
        };
        (site.index.is_some() || site.listings || site.css.is_some() || site.error.is_some())
            .then_some(site)
    }
}

/// What a website request reads.
pub struct WebRequest<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// The object name (empty: the container itself).
    pub name: &'a str,
    /// The request's path as sent (`/v1/...`), for redirects and titles.
    pub url_path: &'a str,
    pub head: bool,
    /// The container a read may reach (an anonymous request's).
    pub within: Option<String>,
}

/// Serves a website request for a directory, or for a name the caller
/// found to be no object.
pub async fn serve(
    state: &ProxyState,
    site: &Site,
    req: WebRequest<'_>,
) -> Result<Response<Body>, SwiftError> {
    let is_dir = req.name.is_empty() || req.name.ends_with('/');
    if req.name.is_empty() && !req.url_path.ends_with('/') {
        return Ok(redirect(&format!("{}/", req.url_path)));
    }
    if !is_dir {
        // Not an object (the caller read it first): a directory, if it has
        // an index or anything under it.
        let dir = format!("{}/", req.name);
        let has_index = match &site.index {
            Some(i) => read(state, &req, &format!("{dir}{i}")).await.is_ok(),
            None => false,
        };
        if has_index || (site.listings && !entries(state, &req, &dir).await?.is_empty()) {
            return Ok(redirect(&format!("{}/", req.url_path)));
        }
        return error_page(state, site, &req, StatusCode::NOT_FOUND).await;
    }
    if let Some(index) = &site.index {
        match read(state, &req, &format!("{}{index}", req.name)).await {
            Err(SwiftError::Object(ObjectError::NoSuchObject)) => {}
            other => return other,
        }
    }
    if site.listings {
        let list = entries(state, &req, req.name).await?;
        if !list.is_empty() || req.name.is_empty() {
            return Ok(listing(site, &req, &list));
        }
    }
    error_page(state, site, &req, StatusCode::NOT_FOUND).await
}

async fn read(
    state: &ProxyState,
    req: &WebRequest<'_>,
    name: &str,
) -> Result<Response<Body>, SwiftError> {
    let read = state
        .objects
        .get(ReadObject {
            head: req.head,
            segments_within: req.within.clone(),
            ..ReadObject::of(ObjectPath::new(req.account, req.container, name))
        })
        .await?;
    let mut r = Response::new(read.body);
    *r.headers_mut() = super::public_headers(&read.headers);
    Ok(r)
}

async fn entries(
    state: &ProxyState,
    req: &WebRequest<'_>,
    prefix: &str,
) -> Result<Vec<ListingEntry>, SwiftError> {
    let target = ListTarget::Container(req.account.to_string(), req.container.to_string());
    let query = ListQuery {
        prefix: prefix.to_string(),
        delimiter: Some("/".into()),
        ..Default::default()
    };
    Ok(state.objects.list(&target, &query).await?.entries)
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(full(String::new()));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    set_header(r.headers_mut(), "location", location);
    r
}

async fn error_page(
    state: &ProxyState,
    site: &Site,
    req: &WebRequest<'_>,
    status: StatusCode,
) -> Result<Response<Body>, SwiftError> {
    if let Some(error) = &site.error {
        if let Ok(mut page) = read(state, req, &format!("{}{error}", status.as_u16())).await {
            *page.status_mut() = status;
            return Ok(page);
        }
    }
    Err(ObjectError::NoSuchObject.into())
}

/// Swift's HTML listing of a directory.
fn listing(site: &Site, req: &WebRequest<'_>, entries: &[ListingEntry]) -> Response<Body> {
    let title = xml_escape(req.url_path);
    let style = match &site.css {
        Some(css) => {
            // Relative to the container, from this directory.
            let up = "../".repeat(req.name.matches('/').count());
            format!(
                "  <link rel=\"stylesheet\" type=\"text/css\" href=\"{}\" />\n",
                xml_escape(&format!("{up}{css}"))
            )
        }
        None => "  <style type=\"text/css\">\n   h1 {font-size: 1em; font-weight: bold;}\n   th {text-align: left; padding: 0px 1em 0px 1em;}\n   td {padding: 0px 1em 0px 1em;}\n   a {text-decoration: none;}\n  </style>\n".into(),
    };
    let mut html = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n<html>\n <head>\n  <title>Listing of {title}</title>\n{style} </head>\n <body>\n  <h1 id=\"title\">Listing of {title}</h1>\n  <table id=\"listing\">\n   <tr id=\"heading\">\n    <th class=\"colname\">Name</th>\n    <th class=\"colsize\">Size</th>\n    <th class=\"coldate\">Date</th>\n   </tr>\n"
    );
    if !req.name.is_empty() {
        html.push_str("   <tr id=\"parent\" class=\"item\">\n    <td class=\"colname\"><a href=\"../\">../</a></td>\n    <td class=\"colsize\">&nbsp;</td>\n    <td class=\"coldate\">&nbsp;</td>\n   </tr>\n");
    }
    for e in entries {
        let (name, size, date, class) = match e {
            ListingEntry::Subdir { subdir } => (
                subdir.as_str(),
                "&nbsp;".to_string(),
                "&nbsp;".to_string(),
                "item subdir".to_string(),
            ),
            ListingEntry::Object {
                name,
                bytes,
                content_type,
                last_modified,
                ..
            } => (
                name.as_str(),
                human_size(*bytes),
                xml_escape(last_modified.get(..19).unwrap_or(last_modified)).replace('T', " "),
                format!(
                    "item {}",
                    content_type
                        .split('/')
                        .map(|t| format!("type-{}", xml_escape(t.split(';').next().unwrap_or(""))))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            ListingEntry::Container { .. } => continue,
        };
        let short = &name[req.name.len().min(name.len())..];
        let href = percent_encoding::utf8_percent_encode(short, service_kit::http_util::PATH);
        html.push_str(&format!(
            "   <tr class=\"{class}\">\n    <td class=\"colname\"><a href=\"{href}\">{}</a></td>\n    <td class=\"colsize\">{size}</td>\n    <td class=\"coldate\">{date}</td>\n   </tr>\n",
            xml_escape(short)
        ));
    }
    html.push_str("  </table>\n </body>\n</html>\n");
    let len = html.len();
    let mut r = Response::new(if req.head {
        full(String::new())
    } else {
        full(html)
    });
    set_header(r.headers_mut(), "content-type", "text/html; charset=UTF-8");
    set_header(r.headers_mut(), "content-length", &len.to_string());
    r
}

/// Sizes as Swift's listing shows them (`1.2K`, `3.0M`).
fn human_size(bytes: u64) -> String {
    let mut size = bytes as f64;
    for unit in ["", "K", "M", "G", "T", "P"] {
        if size < 1024.0 || unit == "P" {
            return if unit.is_empty() {
                format!("{bytes}")
            } else {
                format!("{size:.1}{unit}")
            };
        }
        size /= 1024.0;
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_and_sizes() {
        let mut h = HeaderMap::new();
        assert!(Site::of(&h).is_none());
        set_header(&mut h, LISTINGS, "true");
        let site = Site::of(&h).expect("a site");
        assert!(site.listings && site.index.is_none());
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0M");
    }
}
