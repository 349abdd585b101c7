//! The one mapping from the daemon's errors to gRPC status codes.

use tonic::{Code, Status};

use crate::{core::CoreError, driver::DriverError, reload::ReloadError};

impl From<CoreError> for Status {
    fn from(err: CoreError) -> Status {
        let code = match &err {
            CoreError::NoDomain(_) => Code::NotFound,
            CoreError::InvalidDefinition(_) => Code::InvalidArgument,
            CoreError::NameTaken { .. } | CoreError::UuidTaken { .. } => Code::AlreadyExists,
            CoreError::WrongState { .. } => Code::FailedPrecondition,
            CoreError::ShutdownTimeout { .. } => Code::DeadlineExceeded,
            CoreError::Driver { error, .. } => match error {
                DriverError::Gone => Code::FailedPrecondition,
                DriverError::StartFailed(_) | DriverError::Failed(_) => Code::Internal,
            },
            CoreError::NoSession(_) | CoreError::NotFound(_) => Code::NotFound,
            CoreError::AlreadyExists(_) => Code::AlreadyExists,
            CoreError::InvalidRequest(_) => Code::InvalidArgument,
            CoreError::Console { .. } | CoreError::NoConsole(_) | CoreError::ConsoleState(_) => {
                Code::FailedPrecondition
            }
            CoreError::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!("internal error: {err}");
        }
        Status::new(code, err.to_string())
    }
}

/// A request field that failed conversion.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

impl From<ReloadError> for Status {
    fn from(err: ReloadError) -> Status {
        let code = match &err {
            ReloadError::NothingToReload | ReloadError::Failed { .. } => Code::FailedPrecondition,
            ReloadError::Interrupted(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
