//! `GET /api/recordings/{call_id}`: a call's recording (WAV) for the browser's audio
//! player, with HTTP Range (RFC 9110 §14) so the player can seek.
//!
//! Who may hear a recording (TK-PRIVACY, CALL-RECORDING): recordings exist so the
//! quality of the answer can be assessed (H-17), so supervisors (督办岗) and province
//! administrators hear the calls of the cities in their unit subtree, and the agent
//! who answered a call may replay that call. Dispatchers, units, reviewers and callback
//! staff get 403: the order carries what they need, not the caller's voice. Every
//! request that reads audio (each play and each seek) is written to the audit log
//! before a byte is sent; without the audit row nothing is served.
//!
//! The call id is checked before anything is looked up: ids with a path separator, a
//! `..`, a control character (NUL …) or more than 256 bytes are 400 (`%2e%2e` and
//! `%2F` are decoded by the router first, so they are caught too). The file comes from
//! the call's record, and is served only when its canonical path lies inside the
//! canonical recordings directory (a symlink pointing out of it is refused too).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{CurrentUser, User};
use super::calls::{oversees_city, valid_call_id};
use super::error::{ApiError, ErrorBody};
use crate::ivr::cdr::CallDetailRecord;
use crate::ticket::Role;

/// The server's recordings directory (an axum extension set by the server; without
/// it every recording is 404).
#[derive(Debug, Clone)]
pub struct RecordingsDir(pub Option<PathBuf>);

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(play))
        .routes(routes!(play_voice_message))
}

/// The URL the console plays an order's voice message from (never a server path).
#[must_use]
pub fn voice_message_url(order_id: &str) -> String {
    format!("/api/orders/{order_id}/voice_message")
}

pub use crate::orders::recording_url;

/// Roles that hear the voice message of an order they may read: those who act on it
/// (dispatch, the units, the callback clerks, agents calling back) and those who
/// assess (supervisors, province administrators). Reviewers judge the written reply.
const VOICE_MESSAGE_ROLES: [Role; 7] = [
    Role::Dispatcher,
    Role::UnitHandler,
    Role::UnitHead,
    Role::CallbackStaff,
    Role::Agent,
    Role::Supervisor,
    Role::ProvinceAdmin,
];

/// Whether `user` may hear the recording of `record` (see the module documentation).
#[must_use]
pub fn may_hear(state: &AppState, user: &User, record: &CallDetailRecord) -> bool {
    if user.oversees_calls()
        && oversees_city(
            &state.orders,
            user,
            record.city.as_ref().map(|c| c.as_str()),
        )
    {
        return true;
    }
    user.has(Role::Agent)
        && record
            .agent
            .as_deref()
            .is_some_and(|agent| user.is_agent(agent))
}

/// Which bytes of a file of `len` bytes to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) Range header: the whole file, 200.
    Full,
    /// `first..=last`, 206.
    Part { first: u64, last: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parse a `Range` header against a file of `len` bytes. One range only: a multi-range
/// request gets the whole file (RFC 9110 lets a server ignore Range), and so does a
/// malformed header; a well-formed range outside the file is 416.
#[must_use]
pub fn byte_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || len == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    first: len.saturating_sub(suffix),
                    last: len - 1,
                }
            }
        }
        (false, Some(first), None) if last.trim().is_empty() => {
            if first >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    first,
                    last: len - 1,
                }
            }
        }
        (false, Some(first), Some(last)) if first <= last => {
            if first >= len {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    first,
                    last: last.min(len - 1),
                }
            }
        }
        _ => ByteRange::Full,
    }
}

/// The file of `record` to play: its first recording whose canonical path is a WAV
/// file inside the canonical `root`. Anything else is logged and skipped.
async fn resolve(root: &Path, record: &CallDetailRecord) -> Option<PathBuf> {
    resolve_paths(root, &record.call_id, &record.recordings).await
}

/// The first of `recordings` (of call `call_id`) that is a WAV file inside `root`.
async fn resolve_paths(root: &Path, call_id: &str, recordings: &[String]) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    for stored in recordings {
        let Ok(path) = tokio::fs::canonicalize(stored).await else {
            continue;
        };
        let inside = path.starts_with(&root);
        let wav = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
        let file = tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file());
        if inside && wav && file {
            return Some(path);
        }
        tracing::warn!(
            call_id = %call_id,
            path = %path.display(),
            inside,
            "recording path refused: not a WAV file inside the recordings directory"
        );
    }
    None
}

/// The file's bytes `first..first + count` as a body, read in 64 KiB chunks.
fn file_body(file: tokio::fs::File, count: u64) -> Body {
    let reader = Some(file.take(count));
    let stream = futures_util::stream::unfold(reader, |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err::<Bytes, std::io::Error>(e), None)),
        }
    });
    Body::from_stream(stream)
}

#[utoipa::path(get, path = "/api/recordings/{call_id}", operation_id = "play_recording", tag = "calls",
    summary = "The call's recording (audio/wav) with HTTP Range (206/416); supervisors and province admins of the call's city and the agent who took it (others 403); every request audited",
    params(
        ("call_id" = String, Path, description = "the call"),
        ("Range" = Option<String>, Header, description = "e.g. bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "the whole file", content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "a byte range", content_type = "audio/wav", body = Vec<u8>),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn play(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    dir: Option<Extension<RecordingsDir>>,
    UrlPath(call_id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !valid_call_id(&call_id) {
        return Err(ApiError::bad_request(
            "invalid_call_id",
            "a call id has no path separators, no '..', no control characters and at most 256 bytes",
        ));
    }
    if !(user.oversees_calls() || user.has(Role::Agent)) {
        return Err(ApiError::forbidden(
            "recordings are for supervisors, province administrators and the agent who took the call",
        ));
    }
    let root = dir
        .and_then(|Extension(RecordingsDir(dir))| dir)
        .ok_or_else(|| ApiError::not_found("recording"))?;
    let record = state
        .store
        .call_record(&call_id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    if !may_hear(&state, &user, &record) {
        return Err(ApiError::forbidden(
            "this recording is for supervisors of the call's city and the agent who took it",
        ));
    }
    let path = resolve(&root, &record)
        .await
        .ok_or_else(|| ApiError::not_found("recording"))?;
    serve_wav(
        &state,
        &user,
        &path,
        &headers,
        "recording.play",
        &call_id,
        "",
    )
    .await
}

/// `GET /api/orders/{id}/voice_message`: the caller's voice message of an order, for
/// the roles of [`VOICE_MESSAGE_ROLES`] that may read the order (404 otherwise, as for
/// the order itself). Served like a recording (Range, audited before a byte is sent:
/// `voice_message.play`, naming the order and the call).
#[utoipa::path(get, path = "/api/orders/{id}/voice_message", tag = "orders",
    summary = "The caller's voice message of the order (audio/wav, Range), for dispatch, units, callback staff, agents and supervisors who may read the order (404 otherwise; 403 for reviewers); audited as voice_message.play naming the order and the call. The order's voice_message.play_url points here",
    params(
        ("id" = String, Path, description = "order id"),
        ("Range" = Option<String>, Header, description = "e.g. bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "the whole file", content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "a byte range", content_type = "audio/wav", body = Vec<u8>),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn play_voice_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    dir: Option<Extension<RecordingsDir>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let order = super::orders::visible_order(&state, &user, &id).await?;
    if !VOICE_MESSAGE_ROLES.iter().any(|r| user.has(*r)) {
        return Err(ApiError::forbidden(
            "voice messages are for dispatch, the handling units, callback staff, agents and supervisors",
        ));
    }
    let call_id = order
        .fields
        .call_id
        .as_ref()
        .ok_or_else(|| ApiError::not_found("voice message"))?;
    // Only the message the order was opened from: a call id typed into another
    // order does not open someone else's message.
    let message = state
        .store
        .voice_message(&call_id.0)
        .await?
        .filter(|m| m.work_order.as_deref() == Some(order.id.0.as_str()))
        .ok_or_else(|| ApiError::not_found("voice message"))?;
    let root = dir
        .and_then(|Extension(RecordingsDir(dir))| dir)
        .ok_or_else(|| ApiError::not_found("voice message"))?;
    let path = resolve_paths(
        &root,
        &message.call_id,
        std::slice::from_ref(&message.recording),
    )
    .await
    .ok_or_else(|| ApiError::not_found("voice message"))?;
    let detail = format!("call {}; ", message.call_id);
    serve_wav(
        &state,
        &user,
        &path,
        &headers,
        "voice_message.play",
        &order.id.0,
        &detail,
    )
    .await
}

/// Serve the WAV at `path` with Range, after writing the audit line (`action` on
/// `subject`, the bytes served after `detail`); without the audit line nothing is sent.
async fn serve_wav(
    state: &AppState,
    user: &User,
    path: &Path,
    headers: &HeaderMap,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<Response, ApiError> {
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .len();
    let range = byte_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    if range == ByteRange::Unsatisfiable {
        let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        return Ok(response);
    }
    let (status, first, count) = match range {
        ByteRange::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        _ => (StatusCode::OK, 0, len),
    };
    let detail = match range {
        ByteRange::Part { first, last } => format!("{detail}bytes {first}-{last}/{len}"),
        _ => format!(
            "{detail}bytes 0-{}/{len} (whole file)",
            len.saturating_sub(1)
        ),
    };
    let at = state.orders.clock.now().timestamp_millis();
    if let Err(e) = state
        .store
        .audit(at, &user.id, action, subject, &detail)
        .await
    {
        tracing::warn!(%e, "audit of a recording play failed: not served");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the play cannot be audited now; try again",
        ));
    }
    tracing::info!(%subject, user = %user.id, %action, %detail, "recording played");
    file.seek(SeekFrom::Start(first))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut response = Response::new(file_body(file, count));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let ByteRange::Part { first, last } = range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use ByteRange::{Full, Part, Unsatisfiable};
        assert_eq!(byte_range(None, 100), Full);
        assert_eq!(
            byte_range(Some("bytes=0-9"), 100),
            Part { first: 0, last: 9 }
        );
        assert_eq!(
            byte_range(Some("bytes=90-"), 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            byte_range(Some("bytes=-10"), 100),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            byte_range(Some("bytes=-1000"), 100),
            Part { first: 0, last: 99 }
        );
        assert_eq!(
            byte_range(Some("bytes=50-1000"), 100),
            Part {
                first: 50,
                last: 99
            }
        );
        assert_eq!(byte_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=100-200"), 100), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-"), 0), Unsatisfiable);
        // Ignored: multi-range, other units, malformed, reversed.
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(byte_range(Some("items=0-1"), 100), Full);
        assert_eq!(byte_range(Some("bytes=abc"), 100), Full);
        assert_eq!(byte_range(Some("bytes=9-1"), 100), Full);
        assert_eq!(byte_range(Some("bytes=+1-2"), 100), Full);
        assert_eq!(
            byte_range(Some("bytes=99999999999999999999999-"), 100),
            Full
        );
    }
}
