use rsasl::prelude::{SASLClient, SASLConfig};

use super::*;
use crate::auth::sasl_layer::LayerPolicy;
use crate::auth::users::make_record;

fn server() -> SaslServer {
    let users = Arc::new(UserDb::new(vec![make_record("alice", b"s3cret")]));
    let offered = ["SCRAM-SHA-256".to_owned(), "PLAIN".to_owned()];
    SaslServer::new(users, &offered).expect("server")
}

/// Runs a whole login as an rsasl client; returns the user or the error, and every
/// message the server sent.
fn login(
    server: &SaslServer,
    mech: &str,
    authzid: Option<&str>,
    user: &str,
    password: &str,
) -> (Result<String, SaslError>, Vec<Vec<u8>>) {
    let config =
        SASLConfig::with_credentials(authzid.map(str::to_owned), user.into(), password.into())
            .expect("client config");
    let name = Mechname::parse(mech.as_bytes()).expect("mechname");
    let mut client = SASLClient::new(config)
        .start_suggested(&[name])
        .expect("client start");
    let mut exchange = server
        .start(mech, server.offered(), LayerPolicy::NoneOnly)
        .expect("server start");
    let mut sent = Vec::new();
    let mut to_server = Vec::new();
    client.step(None, &mut to_server).expect("client first");
    for _ in 0..4 {
        match exchange.step(Some(&to_server)) {
            Ok(step) => {
                let reply = step.output.unwrap_or_default();
                sent.push(reply.clone());
                if step.done {
                    return (exchange.user(), sent);
                }
                to_server.clear();
                client
                    .step(Some(&reply), &mut to_server)
                    .expect("client step");
            }
            Err(e) => return (Err(e), sent),
        }
    }
    panic!("the exchange did not end");
}

#[test]
fn scram_and_plain_log_in_with_the_same_record() {
    let s = server();
    for mech in ["SCRAM-SHA-256", "PLAIN"] {
        let (user, _) = login(&s, mech, None, "alice", "s3cret");
        assert_eq!(user, Ok("alice".to_owned()), "{mech}");
        let (user, _) = login(&s, mech, None, "alice", "wrong");
        assert_eq!(user, Err(SaslError::Failed), "{mech}");
    }
}

#[test]
fn unknown_users_get_the_answers_wrong_passwords_get() {
    let s = server();
    let (wrong, wrong_msgs) = login(&s, "SCRAM-SHA-256", None, "alice", "wrong");
    let (unknown, unknown_msgs) = login(&s, "SCRAM-SHA-256", None, "mallory", "wrong");
    assert_eq!(wrong, unknown);
    let iterations = |msgs: &[Vec<u8>]| {
        let first = String::from_utf8(msgs[0].clone()).expect("utf8");
        first.rsplit(",i=").next().map(str::to_owned)
    };
    assert_eq!(iterations(&wrong_msgs), iterations(&unknown_msgs));
    assert_eq!(
        wrong_msgs.last(),
        unknown_msgs.last(),
        "same final message (no e=unknown-user)"
    );
    // The decoy salt is stable, as a real user's is.
    let salt = |msgs: &[Vec<u8>]| {
        let first = String::from_utf8(msgs[0].clone()).expect("utf8");
        first
            .split(",s=")
            .nth(1)
            .map(|s| s.split(',').next().unwrap_or_default().to_owned())
    };
    let (_, again) = login(&s, "SCRAM-SHA-256", None, "mallory", "other");
    assert_eq!(salt(&unknown_msgs), salt(&again));
    let (plain, _) = login(&s, "PLAIN", None, "mallory", "s3cret");
    assert_eq!(plain, Err(SaslError::Failed));
}

#[test]
fn acting_as_another_user_is_refused() {
    let s = server();
    let (user, _) = login(&s, "PLAIN", Some("root"), "alice", "s3cret");
    assert_eq!(user, Err(SaslError::Failed));
    let (user, _) = login(&s, "PLAIN", Some("alice"), "alice", "s3cret");
    assert_eq!(user, Ok("alice".to_owned()));
}

#[test]
fn only_offered_mechanisms_start() {
    let s = server();
    let no_plain = s.offered_on_plain_tcp();
    assert_eq!(no_plain, ["SCRAM-SHA-256"]);
    assert!(matches!(
        s.start("PLAIN", &no_plain, LayerPolicy::NoneOnly),
        Err(SaslError::NotOffered(..))
    ));
    assert!(matches!(
        s.start("SCRAM-SHA-1", s.offered(), LayerPolicy::NoneOnly),
        Err(SaslError::NotOffered(..))
    ));
}

#[test]
fn gssapi_is_offered_only_where_a_build_and_a_service_allow_it() {
    let users = Arc::new(UserDb::new(Vec::new()));
    let offered = [
        "GSSAPI".to_owned(),
        "SCRAM-SHA-256".to_owned(),
        "PLAIN".to_owned(),
    ];
    let s = SaslServer::new(users.clone(), &offered).expect("server");
    assert_eq!(s.offered_on_plain_tcp(), ["SCRAM-SHA-256"]);
    assert!(s.offers_passwords());
    let kerberos_only = SaslServer::new(users, &["GSSAPI".to_owned()]).expect("server");
    assert!(!kerberos_only.offers_passwords());
    if cfg!(feature = "gssapi") {
        assert_eq!(s.offered_without_tls(), ["GSSAPI"]);
        // Offered, but without a service nothing can accept it.
        assert!(matches!(
            s.start("GSSAPI", s.offered(), LayerPolicy::NoneOnly),
            Err(SaslError::NotOffered(..))
        ));
    } else {
        assert!(s.offered_without_tls().is_empty());
        assert!(!s.offers_gssapi());
    }
}
