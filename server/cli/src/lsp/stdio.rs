//! A guard between stdin and the LSP framework. `tower-lsp-server` stops reading for good after
//! the first frame it cannot decode (bad headers, bad JSON, a non-JSON-RPC object), which would
//! end the daemon. This re-frames stdin so that only well-formed JSON-RPC messages reach it:
//!
//! - header garbage and frames without `Content-Length` are skipped (logged);
//! - bodies over [`MAX_MESSAGE`] are discarded unread (streamed, never buffered);
//! - a body that is not JSON-RPC is dropped, unless it carries a request id: then it becomes a
//!   request of [`INVALID_REQUEST_METHOD`], which answers that id with `InvalidRequest`;
//! - a message of a method without parameters ([`NO_PARAMS`]) whose `params` are empty (`{}`,
//!   `[]` or `null`) loses them: JSON-RPC allows all of these and absent alike, client libraries
//!   differ in which they send, and the framework accepts only absent or `null` there.
//!
//! End of stdin stays end of stdin: the daemon then exits.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::request::Request as _;

/// The largest message the daemon reads.
pub const MAX_MESSAGE: u64 = 16 * 1024 * 1024;
/// The longest header line.
const MAX_HEADER_LINE: u64 = 8 * 1024;
/// Internal method answering malformed requests (never sent by clients).
pub const INVALID_REQUEST_METHOD: &str = "$/lane/invalidRequest";
/// The methods that take no parameters: the custom requests `lane lsp --describe` lists with
/// `"params": null`, and LSP's own `shutdown` and `exit`.
pub const NO_PARAMS: &[&str] = &[super::ext::StatusRequest::METHOD, "shutdown", "exit"];

/// What to do with one message body.
#[derive(Debug, PartialEq)]
pub enum Checked {
    Forward,
    /// Valid, but to be forwarded as this body instead (empty `params` dropped).
    Rewrite(Vec<u8>),
    /// Not a valid message, but it has an id worth answering.
    Answer {
        id: Value,
        reason: String,
    },
    Drop(String),
}

pub fn check(body: &[u8]) -> Checked {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Checked::Drop(format!("not JSON: {e}")),
    };
    let as_request = serde_json::from_value::<jsonrpc::Request>(value.clone());
    let as_response = serde_json::from_value::<jsonrpc::Response>(value.clone());
    if as_request.is_ok() || as_response.is_ok() {
        return without_empty_params(value).map_or(Checked::Forward, Checked::Rewrite);
    }
    let reason = match as_request {
        Err(e) => format!("not a JSON-RPC 2.0 message: {e}"),
        Ok(_) => "not a JSON-RPC 2.0 message".into(),
    };
    match value.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) if value.get("method").is_some() => {
            Checked::Answer {
                id: id.clone(),
                reason,
            }
        }
        _ => Checked::Drop(reason),
    }
}

/// The message without its `params` when its method takes none and they are empty; `None` when
/// nothing changes. Non-empty params stay, so the method answers `InvalidParams` for them.
fn without_empty_params(mut value: Value) -> Option<Vec<u8>> {
    let method = value.get("method")?.as_str()?;
    if !NO_PARAMS.contains(&method) {
        return None;
    }
    let empty = match value.get("params")? {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        return None;
    }
    value.as_object_mut()?.remove("params");
    serde_json::to_vec(&value).ok()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads headers up to the blank line; returns the content length if there was one, or `None`
/// at end of input.
async fn read_headers<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Option<u64>>> {
    let mut length = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(Some(length));
        }
        match text.split_once(':') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                length = value.trim().parse::<u64>().ok();
                if length.is_none() {
                    tracing::warn!("ignoring a bad Content-Length header: {text:?}");
                }
            }
            Some(_) => {}
            None => tracing::warn!(
                "ignoring input that is not an LSP header: {:?}",
                text.chars().take(80).collect::<String>()
            ),
        }
    }
}

/// Copies `input` to the returned reader, frame by frame, dropping what the framework could not
/// survive.
pub fn guard<R: AsyncRead + Unpin + Send + 'static>(input: R) -> impl AsyncRead + Unpin {
    let (mut to_server, from_guard) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        loop {
            let length = match read_headers(&mut reader).await {
                Ok(Some(Some(len))) => len,
                Ok(Some(None)) => {
                    tracing::warn!("skipping a message without Content-Length");
                    continue;
                }
                Ok(None) | Err(_) => break,
            };
            if length > MAX_MESSAGE {
                tracing::warn!("skipping a message of {length} bytes (the limit is {MAX_MESSAGE})");
                let skipped =
                    tokio::io::copy(&mut (&mut reader).take(length), &mut tokio::io::sink()).await;
                if skipped.map_or(true, |n| n < length) {
                    break;
                }
                continue;
            }
            let mut body = vec![0; usize::try_from(length).unwrap_or(0)];
            if reader.read_exact(&mut body).await.is_err() {
                break;
            }
            let out = match check(&body) {
                Checked::Forward => body,
                Checked::Rewrite(rewritten) => rewritten,
                Checked::Answer { id, reason } => {
                    tracing::warn!("answering a malformed request: {reason}");
                    serde_json::to_vec(&json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "method": INVALID_REQUEST_METHOD,
                        "params": { "reason": reason },
                    }))
                    .unwrap_or_default()
                }
                Checked::Drop(reason) => {
                    tracing::warn!("dropping a malformed message: {reason}");
                    continue;
                }
            };
            if to_server.write_all(&frame(&out)).await.is_err() {
                break;
            }
        }
        // Dropping the writer is the framework's end of input.
    });
    from_guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_rpc_passes() {
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","id":1,"method":"lane/status"}"#),
            Checked::Forward
        );
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#),
            Checked::Forward
        );
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","id":3,"result":null}"#),
            Checked::Forward
        );
        assert!(matches!(check(b"{oops"), Checked::Drop(_)));
        for params in ["{}", "[]", "null"] {
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":2,"method":"lane/status","params":{params}}}"#);
            let Checked::Rewrite(out) = check(body.as_bytes()) else {
                panic!("empty params {params} of lane/status are not dropped");
            };
            assert_eq!(
                serde_json::from_slice::<Value>(&out).ok(),
                Some(json!({"jsonrpc": "2.0", "id": 2, "method": "lane/status"}))
            );
        }
        // Non-empty params of a method without any, and params of other methods, stay.
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","id":2,"method":"lane/status","params":{"x":1}}"#),
            Checked::Forward
        );
        assert_eq!(
            check(br#"{"jsonrpc":"2.0","id":2,"method":"lane/list","params":{}}"#),
            Checked::Forward
        );
        assert!(matches!(check(br#"{"hello":1}"#), Checked::Drop(_)));
        assert!(matches!(
            check(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#),
            Checked::Answer { id, .. } if id == json!(7)
        ));
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_are_skipped() {
        let good = br#"{"jsonrpc":"2.0","id":1,"method":"lane/status"}"#;
        let mut input = Vec::new();
        input.extend_from_slice(b"garbage line\r\n\r\n");
        input.extend_from_slice(&frame(b"{not json"));
        input.extend_from_slice(format!("Content-Length: {}\r\n\r\n", MAX_MESSAGE + 1).as_bytes());
        input.extend(std::iter::repeat_n(
            b' ',
            usize::try_from(MAX_MESSAGE + 1).unwrap_or(0),
        ));
        input.extend_from_slice(b"Content-Type: application/vscode-jsonrpc; charset=latin1\r\n");
        input.extend_from_slice(&frame(good));
        let mut out = Vec::new();
        guard(std::io::Cursor::new(input))
            .read_to_end(&mut out)
            .await
            .expect("the guard's output is readable");
        assert_eq!(out, frame(good));
    }
}
