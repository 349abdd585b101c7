//! Sizes vmgated accepts in API requests, shared with the CLI so that `vmgate` refuses an
//! input that is too large before reading all of it or sending it, naming the same limit
//! the daemon would.

/// The largest domain definition `define` accepts; real ones are a few hundred bytes.
pub const MAX_DEFINITION_BYTES: usize = 1 << 20;

/// The longest password a SASL user may have.
pub const MAX_USER_PASSWORD_BYTES: usize = 1024;

/// The largest console ACL file `console-acl set` reads; a rule is one short line, so this
/// is tens of thousands of rules.
pub const MAX_ACL_FILE_BYTES: usize = 1 << 20;
