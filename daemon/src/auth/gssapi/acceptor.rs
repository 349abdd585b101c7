//! One Kerberos service the daemon accepts logins for: the keytab its key is read from,
//! the service name every ticket must be for, and how principals are named.
//!
//! The acceptor credential is taken from the configured keytab with
//! `gss_acquire_cred_from` (MIT's credential store), so consoles and the API can each
//! have their own keytab in one process; without a keytab, Kerberos' default
//! (`KRB5_KTNAME`, else /etc/krb5.keytab) is used. It is for Kerberos 5 alone, so no
//! other mechanism GSSAPI knows (SPNEGO, IAKERB, NTLM) is ever run for an
//! unauthenticated client. The credential names no principal, so any key in the keytab
//! can accept: the exchange then checks that the ticket was for this service, which keeps
//! a system keytab's `host/` key from opening consoles.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    ptr,
};

use libgssapi::{
    credential::{Cred, CredUsage},
    error::{Error as GssError, MajorFlags},
    oid::{GSS_MECH_KRB5, OidSet},
};

/// Kerberos 5's mechanism OID, 1.2.840.113554.1.2.2, in DER.
const KRB5_MECHANISM: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

use super::{GssExchange, LayerPolicy};

/// A Kerberos service vmgate accepts logins for.
#[derive(Clone, Debug)]
pub struct GssapiService {
    keytab: Option<PathBuf>,
    service: String,
    local_realm: Option<String>,
}

impl GssapiService {
    /// `keytab` None means Kerberos' default keytab.
    pub fn new(
        keytab: Option<PathBuf>,
        service: &str,
        local_realm: Option<String>,
    ) -> GssapiService {
        GssapiService {
            keytab,
            service: service.to_owned(),
            local_realm,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn local_realm(&self) -> Option<&str> {
        self.local_realm.as_deref()
    }

    /// Where the key comes from, for messages.
    pub fn keytab_name(&self) -> String {
        match &self.keytab {
            Some(path) => path.display().to_string(),
            None => "the default keytab (KRB5_KTNAME or /etc/krb5.keytab)".into(),
        }
    }

    /// Reads the keytab now, so a missing or unreadable one is reported at start rather
    /// than at the first login.
    pub fn check(&self) -> Result<(), String> {
        self.credential().map(drop)
    }

    /// An acceptor credential from the keytab; read afresh for each login, so a keytab
    /// rotated with `ktadd` takes effect without a restart.
    pub fn credential(&self) -> Result<Cred, String> {
        acquire_acceptor(self.keytab.as_deref()).map_err(|e| {
            format!(
                "cannot use the keytab {} for service {:?}: {e}",
                self.keytab_name(),
                self.service
            )
        })
    }

    /// Starts one login whose security layer follows `policy`; the keytab is read at its
    /// first step, off the async threads.
    pub fn start(&self, policy: LayerPolicy) -> GssExchange {
        GssExchange::new(self.clone(), policy)
    }

    /// Whether `target` (the principal the client's ticket was for, `vnc/host@REALM`)
    /// belongs to this service.
    pub fn is_our_service(&self, target: &str) -> bool {
        target
            .split_once('/')
            .is_some_and(|(service, _)| service == self.service)
    }
}

/// `gss_acquire_cred_from` with `keytab` as the credential store, or plain
/// `gss_acquire_cred` without one; either names no principal.
#[allow(unsafe_code)]
fn acquire_acceptor(keytab: Option<&Path>) -> Result<Cred, GssError> {
    let Some(keytab) = keytab else {
        let mut krb5 = OidSet::new();
        krb5.add(GSS_MECH_KRB5)?;
        return Cred::acquire(None, None, CredUsage::Accept, Some(&krb5));
    };
    let invalid = GssError {
        major: MajorFlags::GSS_S_FAILURE,
        minor: 0,
    };
    let value = CString::new(keytab.as_os_str().as_bytes()).map_err(|_| invalid)?;
    let mut element = libgssapi_sys::gss_key_value_element_desc {
        key: c"keytab".as_ptr(),
        value: value.as_ptr(),
    };
    let store = libgssapi_sys::gss_key_value_set_desc {
        count: 1,
        elements: &mut element,
    };
    let mut krb5_bytes = KRB5_MECHANISM;
    let mut krb5 = libgssapi_sys::gss_OID_desc {
        length: KRB5_MECHANISM.len() as libgssapi_sys::OM_uint32,
        elements: krb5_bytes.as_mut_ptr().cast(),
    };
    let mut mechanisms = libgssapi_sys::gss_OID_set_desc {
        count: 1,
        elements: &mut krb5,
    };
    let mut minor: libgssapi_sys::OM_uint32 = 0;
    let mut cred: libgssapi_sys::gss_cred_id_t = ptr::null_mut();
    // SAFETY: every pointer passed is valid for the call: `store`, `mechanisms` and what
    // they point to outlive it and are only read, the name is GSS_C_NO_NAME (null), and
    // the outputs not wanted are null, as the API allows.
    // On success `cred` is a credential this code now owns, handed to `Cred`, which
    // releases it when dropped.
    let major = unsafe {
        libgssapi_sys::gss_acquire_cred_from(
            &mut minor,
            ptr::null_mut(),
            libgssapi_sys::_GSS_C_INDEFINITE,
            &mut mechanisms,
            libgssapi_sys::GSS_C_ACCEPT as libgssapi_sys::gss_cred_usage_t,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if major == libgssapi_sys::GSS_S_COMPLETE {
        // SAFETY: see above; `cred` came from a successful acquire and is owned once.
        Ok(unsafe { Cred::from_c(cred) })
    } else {
        Err(GssError {
            major: MajorFlags::from_bits_retain(major),
            minor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tickets_for_the_service_are_ours() {
        let vnc = GssapiService::new(None, "vnc", None);
        assert!(vnc.is_our_service("vnc/localhost@TEST.LOCAL"));
        assert!(!vnc.is_our_service("host/localhost@TEST.LOCAL"));
        assert!(!vnc.is_our_service("vncx/localhost@TEST.LOCAL"));
        assert!(!vnc.is_our_service("vnc@TEST.LOCAL"));
    }

    #[test]
    fn a_missing_keytab_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.keytab");
        let service = GssapiService::new(Some(missing.clone()), "vnc", None);
        let err = service.check().expect_err("no keytab");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("\"vnc\""), "{err}");
    }
}
