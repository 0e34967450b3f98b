//! What the history page reads of each request (cookie, host, origin,
//! scheme) and the headers it puts on each answer.

use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

/// The request headers the page decides on.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestInfo {
    pub(super) cookie: Option<String>,
    pub(super) host: Option<String>,
    pub(super) forwarded_host: Option<String>,
    pub(super) forwarded_proto: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) referer: Option<String>,
    pub(super) accept: Option<String>,
}

pub(super) fn info() -> impl Filter<Extract = (RequestInfo,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("cookie")
        .and(warp::header::optional::<String>("host"))
        .and(warp::header::optional::<String>("x-forwarded-host"))
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("referer"))
        .and(warp::header::optional::<String>("accept"))
        .map(
            |cookie, host, forwarded_host, forwarded_proto, origin, referer, accept| RequestInfo {
                cookie,
                host,
                forwarded_host,
                forwarded_proto,
                origin,
                referer,
                accept,
            },
        )
}

impl RequestInfo {
    /// The host (and port) the browser addressed: the proxy's
    /// `X-Forwarded-Host` when there is one, else `Host`.
    fn addressed_host(&self) -> Option<&str> {
        self.forwarded_host
            .as_deref()
            .and_then(|h| h.split(',').next())
            .or(self.host.as_deref())
            .map(str::trim)
            .filter(|h| !h.is_empty())
    }

    /// Whether the browser reached the page over https: a proxy in front
    /// says so with `X-Forwarded-Proto`; a browser says so in `Origin`.
    pub(super) fn is_https(&self) -> bool {
        let forwarded = self
            .forwarded_proto
            .as_deref()
            .and_then(|p| p.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        forwarded
            || self
                .origin
                .as_deref()
                .is_some_and(|o| o.to_ascii_lowercase().starts_with("https://"))
    }

    /// Whether a POST comes from a page of this very site: its `Origin`
    /// (or, from a browser that sends none, its `Referer`) names the host
    /// the request was sent to. A request with neither is refused: every
    /// browser in use sends `Origin` on a form POST.
    pub(super) fn same_origin(&self) -> bool {
        let Some(host) = self.addressed_host() else {
            return false;
        };
        let source = match (&self.origin, &self.referer) {
            (Some(origin), _) if origin != "null" => origin,
            (None, Some(referer)) => referer,
            _ => return false,
        };
        let Ok(url) = url::Url::parse(source) else {
            return false;
        };
        let Some(source_host) = url.host_str() else {
            return false;
        };
        let authority = match url.port() {
            Some(port) => format!("{source_host}:{port}"),
            None => source_host.to_owned(),
        };
        // `Host` leaves out a default port; so does `Url::port`.
        let host = host.trim_end_matches(":80").trim_end_matches(":443");
        authority.eq_ignore_ascii_case(host)
    }

    /// Whether the client reads HTML (a browser) rather than JSON.
    pub(super) fn wants_html(&self) -> bool {
        self.accept
            .as_deref()
            .is_none_or(|a| a.contains("text/html") || !a.contains("json"))
    }
}

/// The headers every answer of the page carries: nothing is cached (the
/// pages show personal data), nothing is framed (a Replay button in a
/// hidden frame would be clickjacking), no script or foreign resource runs.
pub(super) fn finish(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A 303 to `location` (a path of this site).
pub(super) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) fn html(status: StatusCode, markup: maud::Markup) -> Response {
    warp::reply::with_status(warp::reply::html(markup.into_string()), status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: Option<&str>, referer: Option<&str>, host: &str) -> RequestInfo {
        RequestInfo {
            host: Some(host.into()),
            origin: origin.map(Into::into),
            referer: referer.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn only_posts_from_this_site_pass() {
        let host = "127.0.0.1:9090";
        assert!(from(Some("http://127.0.0.1:9090"), None, host).same_origin());
        assert!(from(None, Some("http://127.0.0.1:9090/deliveries/x"), host).same_origin());
        assert!(from(Some("https://admin.example"), None, "admin.example").same_origin());
        assert!(from(Some("https://admin.example"), None, "admin.example:443").same_origin());
        for (origin, referer) in [
            (Some("http://evil.example"), None),
            (Some("http://127.0.0.1:9091"), None),
            (Some("null"), Some("http://127.0.0.1:9090/")),
            (Some("http://evil.example"), Some("http://127.0.0.1:9090/")),
            (None, Some("http://127.0.0.1.evil.example:9090/")),
            (None, None),
            (Some("not a url"), None),
        ] {
            assert!(
                !from(origin, referer, host).same_origin(),
                "{origin:?} {referer:?}"
            );
        }
        let mut proxied = from(Some("https://ops.example"), None, "10.0.0.5:9090");
        assert!(!proxied.same_origin());
        proxied.forwarded_host = Some("ops.example".into());
        assert!(proxied.same_origin());
    }

    #[test]
    fn https_is_told_by_the_proxy_or_the_origin() {
        let mut r = RequestInfo::default();
        assert!(!r.is_https());
        r.forwarded_proto = Some("https".into());
        assert!(r.is_https());
        r.forwarded_proto = None;
        r.origin = Some("https://ops.example".into());
        assert!(r.is_https());
    }
}
