//! Attachments of public submissions (issue 17, W-9): a citizen adds images or a PDF to
//! an order with its query code and phone; the type is decided by the content (magic
//! bytes, the `infer` crate), never by the name or the declared type; the size is
//! capped; the file is written (fsync'd) under `<data_dir>/attachments/` before its row
//! links it to the order. Staff who may read the order list and download them.

use std::path::PathBuf;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::CurrentUser;
use super::error::{ApiError, ErrorBody};
use crate::store::attachments::StoredAttachment;
use crate::ticket::State as OrderState;

/// Largest attachment accepted.
pub const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;
/// Most attachments per order.
pub const MAX_ATTACHMENTS: usize = 5;
/// Types accepted, as sniffed from the content.
pub const ACCEPTED_TYPES: [&str; 3] = ["image/jpeg", "image/png", "application/pdf"];

/// The routes of this module: the upload takes bodies up to [`MAX_ATTACHMENT_BYTES`].
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(attach))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ATTACHMENT_BYTES))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(list_attachments))
                .routes(routes!(download_attachment)),
        )
}

/// An attachment as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentView {
    pub id: String,
    /// As sniffed from the content.
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    pub created_at: Option<DateTime<FixedOffset>>,
}

fn view(a: &StoredAttachment, offset: FixedOffset) -> AttachmentView {
    AttachmentView {
        id: a.id.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
        created_at: DateTime::from_timestamp_millis(a.created_ms).map(|t| t.with_timezone(&offset)),
    }
}

/// The content's type, when it is one we take.
///
/// # Errors
/// 415 `unsupported_attachment` naming what the content is.
pub fn sniff(content: &[u8]) -> Result<&'static str, ApiError> {
    let found = infer::get(content).map(|t| t.mime_type());
    match found.and_then(|m| ACCEPTED_TYPES.iter().find(|a| **a == m)) {
        Some(accepted) => Ok(accepted),
        None => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_attachment",
            format!(
                "the content is {}: send a JPEG or PNG image or a PDF",
                found.unwrap_or("of no known type")
            ),
        )),
    }
}

fn attachments_dir(state: &AppState) -> Result<PathBuf, ApiError> {
    state.orders.attachments_dir.clone().ok_or_else(|| {
        ApiError::unavailable(
            "attachments_unavailable",
            "this server keeps no attachments",
        )
    })
}

/// Write `content` to `dir/name` durably (temp file, fsync, rename, directory fsync).
fn write_durably(dir: &std::path::Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[utoipa::path(post, path = "/api/public/orders/{query_code}/attachments", tag = "public",
    summary = "A citizen adds an image or PDF to an open order (no login; the phone in X-Contact-Phone): type by content, at most 5 MB, 5 per order",
    security(()),
    params(
        ("query_code" = String, Path, description = "the query code given at submission"),
        ("X-Contact-Phone" = String, Header, description = "the phone given at submission"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file's bytes: JPEG, PNG or PDF (a declared Content-Type must match the content)"),
    responses(
        (status = 201, description = "stored and linked to the order", body = AttachmentView),
        (status = 404, description = "no order with this query code and phone", body = ErrorBody),
        (status = 409, description = "order_closed: a closed order takes no attachments", body = ErrorBody),
        (status = 413, description = "larger than 5 MB", body = ErrorBody),
        (status = 415, description = "unsupported_attachment: the content is not JPEG, PNG or PDF (what it is, in the message)", body = ErrorBody),
        (status = 422, description = "attachment_type_mismatch (the declared type is not the content's), empty_attachment, too_many_attachments", body = ErrorBody),
        (status = 429, description = "too many look-ups from this address: Retry-After", body = ErrorBody),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn attach(
    State(state): State<AppState>,
    Path(query_code): Path<String>,
    parts: Parts,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let phone = parts
        .headers
        .get("x-contact-phone")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_header",
                "X-Contact-Phone (the phone given at submission) is required",
            )
            .with_field("X-Contact-Phone")
        })?
        .to_owned();
    let order = super::public::citizen_order(&state, &parts, &query_code, &phone).await?;
    if order.state == OrderState::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_closed",
            "a closed order takes no attachments",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "attachment_too_large",
                format!("an attachment may be at most {MAX_ATTACHMENT_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request("unreadable_body", "cannot read the request body")
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_attachment",
            "the attachment is empty",
        ));
    }
    let content_type = sniff(&body)?;
    let declared = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v != "application/octet-stream");
    if let Some(declared) = declared
        && declared != content_type
    {
        return Err(ApiError::unprocessable(
            "attachment_type_mismatch",
            format!("declared {declared}, but the content is {content_type}"),
        )
        .with_field("Content-Type"));
    }
    if state.store.attachments_of(&order.id.0).await?.len() >= MAX_ATTACHMENTS {
        return Err(ApiError::unprocessable(
            "too_many_attachments",
            format!("an order takes at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let dir = attachments_dir(&state)?;
    let now = state.orders.clock.now();
    let record = StoredAttachment {
        id: format!("AT{:032x}", rand::random::<u128>()),
        order_id: order.id.0.clone(),
        content_type: content_type.to_owned(),
        size: i64::try_from(body.len()).unwrap_or(i64::MAX),
        sha256: hex::encode(Sha256::digest(&body)),
        created_ms: now.timestamp_millis(),
    };
    let name = record.id.clone();
    let write_dir = dir.clone();
    match tokio::task::spawn_blocking(move || write_durably(&write_dir, &name, &body)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(ApiError::unavailable("attachment_not_stored", {
                tracing::warn!(%e, "attachment not written");
                "the attachment cannot be stored now: retry later"
            }));
        }
        Err(e) => return Err(ApiError::internal(&e)),
    }
    if let Err(e) = state.store.insert_attachment(&record).await {
        let _ = std::fs::remove_file(dir.join(&record.id));
        return Err(e.into());
    }
    tracing::info!(order = %order.id, attachment = %record.id, content_type, size = record.size, "attachment stored");
    Ok((StatusCode::CREATED, Json(view(&record, *now.offset()))).into_response())
}

#[utoipa::path(get, path = "/api/orders/{id}/attachments", tag = "orders",
    summary = "The attachments a citizen sent with the order (anyone who may read the order)",
    params(("id" = String, Path, description = "order id")),
    responses(
        (status = 200, description = "the attachments, oldest first", body = Vec<AttachmentView>),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn list_attachments(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<AttachmentView>>, ApiError> {
    let order = super::orders::visible_order(&state, &user, &id).await?;
    let offset = *state.orders.clock.now().offset();
    let list = state.store.attachments_of(&order.id.0).await?;
    Ok(Json(list.iter().map(|a| view(a, offset)).collect()))
}

#[utoipa::path(get, path = "/api/orders/{id}/attachments/{attachment}", tag = "orders",
    summary = "One attachment's bytes, as a download with its sniffed type (anyone who may read the order)",
    params(("id" = String, Path, description = "order id"), ("attachment" = String, Path, description = "attachment id")),
    responses(
        (status = 200, description = "the file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = "4XX", description = "refused: the reason in the error body", body = ErrorBody),
    ))]
async fn download_attachment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path((id, attachment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let order = super::orders::visible_order(&state, &user, &id).await?;
    let found = state
        .store
        .attachments_of(&order.id.0)
        .await?
        .into_iter()
        .find(|a| a.id == attachment)
        .ok_or_else(|| ApiError::not_found("attachment"))?;
    let path = attachments_dir(&state)?.join(&found.id);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&found.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", found.id)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
