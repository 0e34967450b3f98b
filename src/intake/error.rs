//! Error answers: a status and a JSON body `{"error", "message"}`.

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong endpoint secret, or unknown organization")]
    Unauthorized,
    #[error("too many requests with a wrong endpoint secret from this address; wait a minute")]
    RateLimited,
    #[error("Content-Type {0:?} is not JSON: send the lead as application/json")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the JSON is not a lead: {0}")]
    InvalidLead(String),
    #[error("the lead could not be stored and was NOT accepted; send it again")]
    StoreUnavailable,
    #[error("no such route: leads go to POST /leads/{{organization}}?code={{secret}}")]
    NotFound,
    #[error("method not allowed: leads are sent with POST")]
    MethodNotAllowed,
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::InvalidJson(_) | ApiError::InvalidLead(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The `error` of the JSON answer; also the outcome label in metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::RateLimited => "rate_limited",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidLead(_) => "invalid_lead",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BadRequest(_) => "bad_request",
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = warp::reply::json(&json!({"error": self.code(), "message": self.to_string()}));
        let mut response = warp::reply::with_status(body, self.status()).into_response();
        let retry_after = match self {
            ApiError::StoreUnavailable => Some("5"),
            ApiError::RateLimited => Some("60"),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from_static(seconds));
        }
        // Whatever is left of such a body is not read: the connection ends.
        if matches!(self, ApiError::TooLarge(_) | ApiError::BodyTimeout(_)) {
            response
                .headers_mut()
                .insert("connection", warp::http::HeaderValue::from_static("close"));
        }
        response
    }
}
