//! The method -> (object, permission) table, next to the services it guards, and the
//! permission names as polkit actions spell them (`org.vmgate.api.domain.open-graphics`).
//! A method missing from the table is refused; a test checks the table covers the schema.

use std::fmt;

/// What a permission is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Connect,
    Domain,
    User,
    Host,
}

/// A permission on an object, libvirt's names with dashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    Getattr,
    Read,
    ReadSecure,
    SearchDomains,
    Write,
    Delete,
    Start,
    Stop,
    InitControl,
    Reset,
    Suspend,
    OpenGraphics,
    SetPassword,
    ConsoleAdmin,
    Admin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub object: Object,
    pub perm: Perm,
}

impl Permission {
    const fn new(object: Object, perm: Perm) -> Self {
        Permission { object, perm }
    }

    /// Whether the read-only socket may use it: getattr, read and search-* only.
    pub fn is_read_only(self) -> bool {
        matches!(self.perm, Perm::Getattr | Perm::Read | Perm::SearchDomains)
    }

    /// The polkit action id for this permission.
    pub fn action_id(self) -> String {
        format!("org.vmgate.api.{self}")
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let object = match self.object {
            Object::Connect => "connect",
            Object::Domain => "domain",
            Object::User => "user",
            Object::Host => "host",
        };
        let perm = match self.perm {
            Perm::Getattr => "getattr",
            Perm::Read => "read",
            Perm::ReadSecure => "read-secure",
            Perm::SearchDomains => "search-domains",
            Perm::Write => "write",
            Perm::Delete => "delete",
            Perm::Start => "start",
            Perm::Stop => "stop",
            Perm::InitControl => "init-control",
            Perm::Reset => "reset",
            Perm::Suspend => "suspend",
            Perm::OpenGraphics => "open-graphics",
            Perm::SetPassword => "set-password",
            Perm::ConsoleAdmin => "console-admin",
            Perm::Admin => "admin",
        };
        write!(f, "{object}.{perm}")
    }
}

use Object::*;
use Perm::*;

/// What `list` asks of each domain it shows under the polkit access driver.
pub const DOMAIN_GETATTR: Permission = Permission::new(Domain, Getattr);

/// Every RPC and the permission it needs.
const TABLE: &[(&str, Permission)] = &[
    (
        "/vmgate.v1.Admin/Version",
        Permission::new(Connect, Getattr),
    ),
    ("/vmgate.v1.Admin/ReloadTls", Permission::new(Host, Admin)),
    (
        "/vmgate.v1.Domain/List",
        Permission::new(Connect, SearchDomains),
    ),
    // Every domain's events, as List shows every domain.
    (
        "/vmgate.v1.Domain/Events",
        Permission::new(Connect, SearchDomains),
    ),
    ("/vmgate.v1.Domain/Lookup", Permission::new(Domain, Getattr)),
    ("/vmgate.v1.Domain/Info", Permission::new(Domain, Read)),
    (
        "/vmgate.v1.Domain/GetDefinition",
        Permission::new(Domain, Read),
    ),
    (
        "/vmgate.v1.Domain/GetSecureDefinition",
        Permission::new(Domain, ReadSecure),
    ),
    ("/vmgate.v1.Domain/Define", Permission::new(Domain, Write)),
    (
        "/vmgate.v1.Domain/SetAutostart",
        Permission::new(Domain, Write),
    ),
    (
        "/vmgate.v1.Domain/Undefine",
        Permission::new(Domain, Delete),
    ),
    ("/vmgate.v1.Domain/Start", Permission::new(Domain, Start)),
    ("/vmgate.v1.Domain/Shutdown", Permission::new(Domain, Stop)),
    ("/vmgate.v1.Domain/Destroy", Permission::new(Domain, Stop)),
    (
        "/vmgate.v1.Domain/Reboot",
        Permission::new(Domain, InitControl),
    ),
    ("/vmgate.v1.Domain/Reset", Permission::new(Domain, Reset)),
    (
        "/vmgate.v1.Domain/Suspend",
        Permission::new(Domain, Suspend),
    ),
    ("/vmgate.v1.Domain/Resume", Permission::new(Domain, Suspend)),
    (
        "/vmgate.v1.Console/ListSessions",
        Permission::new(Domain, OpenGraphics),
    ),
    (
        "/vmgate.v1.Console/Disconnect",
        Permission::new(Domain, ConsoleAdmin),
    ),
    (
        "/vmgate.v1.Console/SetPassword",
        Permission::new(Domain, SetPassword),
    ),
    (
        "/vmgate.v1.Console/DomainAudit",
        Permission::new(Domain, ConsoleAdmin),
    ),
    ("/vmgate.v1.Console/Audit", Permission::new(Host, Admin)),
    ("/vmgate.v1.Console/ListAcl", Permission::new(Domain, Read)),
    (
        "/vmgate.v1.Console/ChangeAcl",
        Permission::new(Domain, ConsoleAdmin),
    ),
    ("/vmgate.v1.Users/List", Permission::new(User, Admin)),
    ("/vmgate.v1.Users/Add", Permission::new(User, Admin)),
    ("/vmgate.v1.Users/SetPassword", Permission::new(User, Admin)),
    ("/vmgate.v1.Users/Delete", Permission::new(User, Admin)),
    // Logging in needs no permission: the layer lets these through before a login.
    (
        "/vmgate.v1.Auth/Mechanisms",
        Permission::new(Connect, Getattr),
    ),
    ("/vmgate.v1.Auth/Start", Permission::new(Connect, Getattr)),
    ("/vmgate.v1.Auth/Step", Permission::new(Connect, Getattr)),
];

/// Every method (a gRPC path) with the permission it needs.
pub fn table() -> &'static [(&'static str, Permission)] {
    TABLE
}

/// The permission `method` (a gRPC path) needs, or None for an unknown method.
pub fn permission_for(method: &str) -> Option<Permission> {
    TABLE.iter().find(|(m, _)| *m == method).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_schema_has_a_permission() {
        for method in vmgate_proto::v1::ALL_METHODS {
            assert!(
                permission_for(method).is_some(),
                "{method} is missing from the table"
            );
        }
        for (method, _) in TABLE {
            assert!(
                vmgate_proto::v1::ALL_METHODS.contains(method),
                "{method} is in the table but not in the schema"
            );
        }
    }

    #[test]
    fn read_only_socket_gets_only_read_permissions() {
        assert!(permission_for("/vmgate.v1.Domain/List").is_some_and(|p| p.is_read_only()));
        assert!(permission_for("/vmgate.v1.Domain/Info").is_some_and(|p| p.is_read_only()));
        assert_eq!(
            permission_for("/vmgate.v1.Domain/Events"),
            permission_for("/vmgate.v1.Domain/List"),
            "events need what list needs"
        );
        for write in [
            "Start",
            "Define",
            "Undefine",
            "GetSecureDefinition",
            "SetAutostart",
        ] {
            let p = permission_for(&format!("/vmgate.v1.Domain/{write}"));
            assert!(p.is_some_and(|p| !p.is_read_only()), "{write} must need rw");
        }
    }

    #[test]
    fn action_ids_spell_permissions_with_dashes() {
        assert_eq!(
            Permission::new(Domain, OpenGraphics).action_id(),
            "org.vmgate.api.domain.open-graphics"
        );
        assert_eq!(
            Permission::new(Connect, SearchDomains).action_id(),
            "org.vmgate.api.connect.search-domains"
        );
    }
}
