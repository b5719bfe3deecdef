//! Listings in the three formats Swift clients ask for.

use crate::records::ListingEntry;
use http::HeaderMap;
use serde_json::Value;
use service_kit::http_util::xml_escape;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Plain,
    Json,
    Xml,
}

/// `?format=` wins over `Accept`, as in Swift.
pub fn format(query_format: Option<&str>, headers: &HeaderMap) -> Format {
    match query_format.map(|f| f.to_ascii_lowercase()) {
        Some(f) if f == "json" => return Format::Json,
        Some(f) if f == "xml" => return Format::Xml,
        Some(f) if f == "plain" => return Format::Plain,
        _ => {}
    }
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json") {
        Format::Json
    } else if accept.contains("application/xml") || accept.contains("text/xml") {
        Format::Xml
    } else {
        Format::Plain
    }
}

pub fn content_type(f: Format) -> &'static str {
    match f {
        Format::Plain => "text/plain; charset=utf-8",
        Format::Json => "application/json; charset=utf-8",
        Format::Xml => "application/xml; charset=utf-8",
    }
}

/// Renders the entries of a container (`root` = "container", `item` =
/// "object") or an account.
pub fn render(entries: &[ListingEntry], f: Format, root: &str, item: &str, name: &str) -> Vec<u8> {
    match f {
        Format::Json => serde_json::to_vec(entries).expect("json"),
        Format::Plain => {
            let mut out = String::new();
            for e in entries {
                out.push_str(e.name());
                out.push('\n');
            }
            out.into_bytes()
        }
        Format::Xml => {
            let mut out = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} name=\"{}\">",
                xml_escape(name)
            );
            for e in entries {
                // The fields in name order, as Swift writes them.
                let e = serde_json::to_value(e).expect("json");
                if let Some(s) = e.get("subdir").and_then(Value::as_str) {
                    let s = xml_escape(s);
                    out.push_str(&format!("<subdir name=\"{s}\"><name>{s}</name></subdir>"));
                    continue;
                }
                out.push_str(&format!("<{item}>"));
                if let Some(map) = e.as_object() {
                    for (k, v) in map {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push_str(&format!("<{k}>{}</{k}>", xml_escape(&text)));
                    }
                }
                if item == "container" {
                    // Nubo has one storage policy; Swift's XML names it.
                    out.push_str(&format!(
                        "<storage_policy>{}</storage_policy>",
                        super::info::POLICY
                    ));
                }
                out.push_str(&format!("</{item}>"));
            }
            out.push_str(&format!("</{root}>"));
            out.into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_format() {
        let entries = vec![
            ListingEntry::Object {
                name: "a<b".into(),
                hash: "h".into(),
                bytes: 3,
                content_type: "t".into(),
                last_modified: "x".into(),
                slo_etag: None,
                s3_etag: None,
                version_id: None,
            },
            ListingEntry::Subdir {
                subdir: "d/".into(),
            },
        ];
        assert_eq!(
            render(&entries, Format::Plain, "container", "object", "c"),
            b"a<b\nd/\n"
        );
        let xml =
            String::from_utf8(render(&entries, Format::Xml, "container", "object", "c")).unwrap();
        assert!(
            xml.contains("<object><bytes>3</bytes><content_type>t</content_type><hash>h</hash><last_modified>x</last_modified><name>a&lt;b</name></object>"),
            "{xml}"
        );
        assert!(xml.contains("<subdir name=\"d/\"><name>d/</name></subdir>"));
        let js: Vec<ListingEntry> =
            serde_json::from_slice(&render(&entries, Format::Json, "", "", "")).unwrap();
        assert_eq!(js, entries);
    }
}
