//! Every way an identity request fails, and its Keystone fault: JSON
//! `{"error": {"code", "title", "message"}}`, with `WWW-Authenticate` on
//! 401 as keystonemiddleware expects.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use service_kit::api_error::ApiError;
use service_kit::json_store::StoreError;

/// Why an identity request failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No credentials, wrong ones, or an invalid token. The message never
    /// says whether a user exists.
    #[error("The request you have made requires authentication.")]
    Unauthorized,
    /// Authenticated, but the policy refuses (`identity:<action>`).
    #[error("You are not authorized to perform the requested action: identity:{0}.")]
    Forbidden(&'static str),
    /// A malformed or incomplete request body.
    #[error("{0}")]
    BadRequest(String),
    /// No such record (`Could not find project: x.`).
    #[error("Could not find {0}: {1}.")]
    NotFound(&'static str, String),
    /// A name already taken in its domain.
    #[error("Conflict occurred attempting to store {0} - Duplicate entry found with name {1}.")]
    Conflict(&'static str, String),
    /// The database failed.
    #[error("An unexpected error prevented the server from fulfilling your request.")]
    Store(#[from] StoreError),
}

impl IdentityError {
    fn title(&self) -> &'static str {
        match self {
            IdentityError::Unauthorized => "Unauthorized",
            IdentityError::Forbidden(_) => "Forbidden",
            IdentityError::BadRequest(_) => "Bad Request",
            IdentityError::NotFound(..) => "Not Found",
            IdentityError::Conflict(..) => "Conflict",
            IdentityError::Store(_) => "Internal Server Error",
        }
    }
}

impl ApiError for IdentityError {
    fn status(&self) -> StatusCode {
        match self {
            IdentityError::Unauthorized => StatusCode::UNAUTHORIZED,
            IdentityError::Forbidden(_) => StatusCode::FORBIDDEN,
            IdentityError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IdentityError::NotFound(..) => StatusCode::NOT_FOUND,
            IdentityError::Conflict(..) => StatusCode::CONFLICT,
            IdentityError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if matches!(self, IdentityError::Unauthorized) {
            h.insert(
                "www-authenticate",
                HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
        }
        h
    }

    fn body(&self) -> (&'static str, Bytes) {
        if let IdentityError::Store(e) = self {
            tracing::error!(error = %e, "identity store");
        }
        let body = serde_json::json!({"error": {
            "code": self.status().as_u16(),
            "title": self.title(),
            "message": self.to_string(),
        }});
        ("application/json", Bytes::from(body.to_string()))
    }
}
