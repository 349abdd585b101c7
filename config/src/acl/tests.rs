use super::*;

fn rule(kind: AclKind, pattern: &str, policy: AclPolicy) -> AclRule {
    AclRule {
        kind,
        pattern: pattern.into(),
        policy,
    }
}

fn user(name: &str) -> Principal {
    Principal {
        user: Some(name.into()),
        dn: None,
    }
}

#[test]
fn first_matching_rule_of_the_kind_wins() {
    let rules = [
        rule(AclKind::User, "bob", AclPolicy::Deny),
        rule(AclKind::User, "*", AclPolicy::Allow),
    ];
    assert!(check(&rules, &user("alice"), AclDefault::Allow).is_ok());
    let err = check(&rules, &user("bob"), AclDefault::Allow).expect_err("bob denied");
    assert!(err.contains("deny user bob"), "{err}");
}

#[test]
fn no_match_denies_but_a_kind_without_rules_does_not_restrict() {
    let rules = [rule(AclKind::User, "alice", AclPolicy::Allow)];
    assert!(check(&rules, &user("carol"), AclDefault::Allow).is_err());
    let only_dn = Principal {
        user: None,
        dn: Some("C=GB,CN=x".into()),
    };
    assert!(check(&rules, &only_dn, AclDefault::Allow).is_ok());
}

#[test]
fn every_presented_identity_must_pass() {
    let rules = [
        rule(AclKind::User, "alice", AclPolicy::Allow),
        rule(AclKind::Dn, "*CN=laptop*", AclPolicy::Allow),
    ];
    let both = |dn: &str| Principal {
        user: Some("alice".into()),
        dn: Some(dn.into()),
    };
    assert!(check(&rules, &both("C=GB,CN=laptop1"), AclDefault::Allow).is_ok());
    assert!(check(&rules, &both("C=GB,CN=kiosk"), AclDefault::Allow).is_err());
}

#[test]
fn default_applies_only_to_guests_without_rules_and_never_to_anonymous_sessions() {
    assert!(check(&[], &user("alice"), AclDefault::Allow).is_ok());
    assert!(check(&[], &user("alice"), AclDefault::Deny).is_err());
    assert!(check(&[], &Principal::default(), AclDefault::Deny).is_ok());
    let deny_all = [rule(AclKind::User, "*", AclPolicy::Deny)];
    assert!(check(&deny_all, &Principal::default(), AclDefault::Allow).is_ok());
}

#[test]
fn files_round_trip_and_errors_name_the_position() {
    let rules = vec![
        rule(
            AclKind::Dn,
            "C=GB,O=Example,CN=\"quoted\"*",
            AclPolicy::Allow,
        ),
        rule(AclKind::User, "bob", AclPolicy::Deny),
    ];
    let text = rules_to_toml(&rules);
    assert_eq!(parse_rules(&text, "acl.toml").expect("parse"), rules);

    let err = parse_rules(
        "[[rule]]\nkind = \"group\"\nmatch = \"x\"\npolicy = \"allow\"\n",
        "f",
    )
    .expect_err("bad kind");
    assert!(err.starts_with("f:2:"), "{err}");
    let err = parse_rules(
        "[[rule]]\nkind = \"user\"\nmatch = \"\"\npolicy = \"allow\"\n",
        "f",
    )
    .expect_err("empty pattern");
    assert!(err.contains("rule 1") && err.contains("empty"), "{err}");
    let err = parse_rules("[[rules]]\n", "f").expect_err("unknown table");
    assert!(err.contains("rules"), "{err}");
    assert_eq!(parse_rules("", "f").expect("empty file"), vec![]);
}

#[test]
fn too_many_rules_are_refused() {
    let many = vec![rule(AclKind::User, "x", AclPolicy::Allow); MAX_RULES + 1];
    assert!(check_rules(&many).is_err());
}
