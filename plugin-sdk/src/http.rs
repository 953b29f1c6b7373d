//! Outbound HTTP through `wasi:http`, for output plugins. Needs the `http`
//! capability ([`crate::Capability::Http`]) and a destination the operator
//! allow-listed; otherwise requests fail with `HTTP request denied`.
//!
//! ```no_run
//! let status = vigil_plugin_sdk::http::post_json(
//!     "http://hooks.example.com/vigil",
//!     br#"{"kind":"motion"}"#,
//!     &[("x-token", "secret")],
//! ).unwrap();
//! assert_eq!(status, 200);
//! ```

/// A failed request: why, in words.
pub type HttpError = String;

/// POSTs `body` as `application/json` to `url` (`http://` or `https://`) with
/// extra headers; returns the response status.
pub fn post_json(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<u16, HttpError> {
    imp::post_json(url, body, headers)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    pub fn post_json(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<u16, String> {
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
        let pending = outgoing_handler::handle(req, None).map_err(|e| describe(&e))?;
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
    pub fn post_json(_: &str, _: &[u8], _: &[(&str, &str)]) -> Result<u16, String> {
        Err("HTTP is only available inside the Vigil host (wasm32-wasip2)".into())
    }
}
