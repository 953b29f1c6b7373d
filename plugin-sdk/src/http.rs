//! Outbound HTTP through `wasi:http`, typically for output plugins.
//!
//! Needs the `http` capability ([`crate::Capability::Http`]) granted to the
//! plugin **and** the URL's host on the plugin's allow-list (`http_allow` in its
//! `[[plugin]]` entry: a bare host name admits any port of it, `host:port` only
//! that port; case-insensitive).
//! Anything else is refused before a connection is made, and the call returns
//! `HTTP request denied (…)`: retrying will not help.
//!
//! The host bounds each request: at most 5 s to connect, 5 s to the first
//! response byte and 5 s between bytes. The plugin call's deadline (1 s unless
//! the operator sets `call_timeout_ms`) covers the time spent waiting on the
//! network too: a call that overruns it is interrupted and the instance
//! restarted, so keep requests and retries short or ask the operator for a longer
//! deadline.
//!
//! Only available inside the host (built for `wasm32-wasip2`); in a native build
//! (unit tests) requests fail with a reason.
//!
//! ```no_run
//! let status = vigil_plugin_sdk::http::post_json(
//!     "http://hooks.example.com/vigil",
//!     br#"{"kind":"motion"}"#,
//!     &[("x-token", "secret")],
//! ).unwrap();
//! assert_eq!(status, 200);
//! ```

/// Why a request failed, in words: a denial by the host (the message contains
/// `denied`), a connection or protocol error, or a bad URL or header.
///
/// ```
/// // Natively there is no host to send the request.
/// let e: vigil_plugin_sdk::http::HttpError =
///     vigil_plugin_sdk::http::post_json("http://localhost/", b"{}", &[]).unwrap_err();
/// assert!(!e.is_empty());
/// ```
pub type HttpError = String;

/// POSTs `body` with `content-type: application/json` and a `content-length` to
/// `url` (`http://` or `https://`; the part after the host is sent as path and
/// query), with the extra `headers`; returns the response's status code (any
/// status, 4xx and 5xx included: check it). The response body is not read.
///
/// ```no_run
/// use vigil_plugin_sdk::{Error, http};
/// let status = http::post_json("https://hooks.example.com/vigil?camera=lobby", br#"{"kind":"motion"}"#, &[])
///     .map_err(Error::Failed)?;
/// if !(200..300).contains(&status) {
///     return Err(Error::Failed(format!("HTTP {status}")));
/// }
/// # Ok::<(), Error>(())
/// ```
pub fn post_json(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<u16, HttpError> {
    imp::post_json(url, body, headers, None)
}

/// [`post_json`] that gives up within about `timeout`: half of it to connect,
/// half to the first response byte (the host caps both at 5 s), so a dead or
/// silent receiver cannot make the call overrun its deadline: pass what is left
/// of your time budget.
///
/// ```no_run
/// use std::time::Duration;
/// let r = vigil_plugin_sdk::http::post_json_within(
///     "http://hooks.example.com/vigil",
///     br#"{"kind":"motion"}"#,
///     &[],
///     Duration::from_millis(300),
/// );
/// if let Err(reason) = r {
///     eprintln!("not delivered: {reason}");
/// }
/// ```
pub fn post_json_within(
    url: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<u16, HttpError> {
    imp::post_json(url, body, headers, Some(timeout))
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };

    pub fn post_json(
        url: &str,
        body: &[u8],
        headers: &[(&str, &str)],
        timeout: Option<std::time::Duration>,
    ) -> Result<u16, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(format!("{url:?}: only http:// and https:// URLs"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // A known length (not chunked encoding): simple receivers expect it.
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("content-length".into(), body.len().to_string().into_bytes()),
        ];
        fields.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        let fields = Fields::from_list(&fields).map_err(|e| format!("bad header: {e:?}"))?;
        let req = OutgoingRequest::new(fields);
        req.set_method(&Method::Post)
            .map_err(|_| "cannot set method")?;
        req.set_scheme(Some(&scheme))
            .map_err(|_| "cannot set scheme")?;
        req.set_authority(Some(authority))
            .map_err(|_| format!("bad host {authority:?}"))?;
        req.set_path_with_query(Some(path))
            .map_err(|_| format!("bad path {path:?}"))?;
        let out = req.body().map_err(|_| "cannot open the request body")?;
        let options = timeout.map(|t| {
            // Connecting and waiting for the answer share the time.
            let ns = u64::try_from(t.as_nanos() / 2).unwrap_or(u64::MAX).max(1);
            let o = RequestOptions::new();
            // Refusals only mean the host keeps its own (shorter) bound.
            let _ = o.set_connect_timeout(Some(ns));
            let _ = o.set_first_byte_timeout(Some(ns));
            let _ = o.set_between_bytes_timeout(Some(ns));
            o
        });
        let pending = outgoing_handler::handle(req, options).map_err(|e| describe(&e))?;
        let written = (|| {
            let stream = out
                .write()
                .map_err(|_| "cannot write the request body".to_string())?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| format!("writing the body: {e:?}"))?;
            }
            Ok::<(), String>(())
        })();
        let finished =
            written.and_then(|()| OutgoingBody::finish(out, None).map_err(|e| describe(&e)));
        // A request the host refused (or that failed to connect) closes the body
        // stream early: its response says why, which is what the caller needs.
        pending.subscribe().block();
        match pending.get() {
            Some(Ok(Ok(resp))) => finished.map(|()| resp.status()),
            Some(Ok(Err(e))) => Err(describe(&e)),
            Some(Err(())) => Err("the response was already taken".into()),
            None => finished.and(Err("no response".into())),
        }
    }

    fn describe(e: &wasi::http::types::ErrorCode) -> String {
        use wasi::http::types::ErrorCode;
        match e {
            ErrorCode::HttpRequestDenied => "HTTP request denied (the host is not allow-listed for this plugin, or the http capability is not granted)".into(),
            other => format!("{other:?}"),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub fn post_json(
        _: &str,
        _: &[u8],
        _: &[(&str, &str)],
        _: Option<std::time::Duration>,
    ) -> Result<u16, String> {
        Err("HTTP is only available inside the Vigil host (wasm32-wasip2)".into())
    }
}
