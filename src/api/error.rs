//! One error type for the JSON API: `{"code", "message", "field"}` with the right
//! status. Internal failures are logged here and answered with a generic message:
//! database text never reaches a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;
use crate::store::orders::AppendError;
use crate::ticket::TransitionError;

/// An API error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

/// The body of every error answer (`Error` in the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// Machine-readable reason, e.g. `version_conflict`, `illegal_transition`.
    pub code: &'a str,
    /// The reason in words.
    pub message: &'a str,
    /// The request field (or header) at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

impl ApiError {
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    #[must_use]
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "login required",
        )
    }

    /// 429 with `Retry-After`.
    #[must_use]
    pub fn too_many_attempts(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", message);
        e.retry_after = Some(retry_after_secs);
        e
    }

    #[must_use]
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token header",
        )
    }

    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    #[must_use]
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    #[must_use]
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 503: a part the answer needs is not available (its reason for the operator).
    #[must_use]
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    #[must_use]
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    #[must_use]
    pub fn version_conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "version_conflict",
            "the order was changed by someone else; reload it",
        )
    }

    /// The database is unreachable for now: 503 with Retry-After (the cause is logged).
    /// Work-order creates do not get this: they are queued (202).
    #[must_use]
    pub fn database_unavailable(cause: &dyn std::error::Error) -> Self {
        tracing::warn!(error = %cause, "database unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Self::DATABASE_UNAVAILABLE,
            "the database is unavailable; retry shortly",
        );
        e.retry_after = Some(5);
        e
    }

    /// The `code` of [`ApiError::database_unavailable`].
    pub const DATABASE_UNAVAILABLE: &'static str = "database_unavailable";

    /// Logs the cause; the client sees only "internal error".
    #[must_use]
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            return Self::database_unavailable(&e);
        }
        Self::internal(&e)
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict => Self::version_conflict(),
            AppendError::IdempotencyKeyTaken => Self::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                "a request with this Idempotency-Key is in progress",
            ),
            AppendError::Store(e) => e.into(),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        let message = e.to_string();
        match e {
            TransitionError::NotAllowed { .. } => {
                Self::unprocessable("illegal_transition", message)
            }
            TransitionError::RoleNotPermitted { .. } | TransitionError::OutOfScope { .. } => {
                Self::forbidden(message)
            }
            TransitionError::MissingText { field, .. } => {
                Self::unprocessable("missing_field", message).with_field(field)
            }
            TransitionError::HiddenCharacter { field, .. } => {
                Self::unprocessable("invalid_field", message).with_field(field)
            }
            TransitionError::NotCreated => Self::not_found("order"),
            TransitionError::AlreadyExists => Self::version_conflict(),
            TransitionError::UnknownUnit(_)
            | TransitionError::NoUnits
            | TransitionError::AlreadyHandling(_) => {
                Self::unprocessable("invalid_unit", message).with_field("units")
            }
            TransitionError::NotACity(_) => {
                Self::unprocessable("invalid_city", message).with_field("city")
            }
            TransitionError::ReceivedInFuture { .. } => {
                Self::unprocessable("invalid_field", message).with_field("received_at")
            }
            TransitionError::TimeWentBackwards { .. } => {
                Self::unprocessable("time_went_backwards", message)
            }
            TransitionError::ExtensionTooLate { .. }
            | TransitionError::ExtensionBeyondCap { .. }
            | TransitionError::ExtensionZero
            | TransitionError::ExtensionAlreadyPending
            | TransitionError::NoPendingExtension
            | TransitionError::ExtensionDecidedByRequester(_) => {
                Self::unprocessable("extension_refused", message)
            }
            TransitionError::RedoTargetMismatch { .. } => {
                Self::unprocessable("invalid_field", message).with_field("outcome")
            }
            TransitionError::NoDeadline(_) => {
                Self::unprocessable("invalid_field", message).with_field("deadline")
            }
            TransitionError::WithdrawalNotConfirmed => {
                Self::unprocessable("withdrawal_not_confirmed", message).with_field("call_id")
            }
            TransitionError::WithdrawalCallNotOnRecord(_) => {
                Self::unprocessable("call_not_on_record", message).with_field("call_id")
            }
            TransitionError::SecondCallbackNotBySupervisingUnit { .. }
            | TransitionError::SecondCallbackBySameUser(_) => {
                Self::unprocessable("second_callback_refused", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
