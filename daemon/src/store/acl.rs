//! Console ACL rows: each guest's ordered rules. Rule ids are stable across changes, so
//! `console-acl revoke --rule ID` names the same rule the listing showed.

use std::collections::HashMap;

use sqlx::Row;
use uuid::Uuid;
use vmgate_config::acl::AclRule;

use super::{Store, StoreError, row_uuid};

/// A rule with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    pub id: i64,
    pub rule: AclRule,
}

/// The rules a change leaves: kept ones by id, new ones without.
pub type RuleUpdate = Vec<(Option<i64>, AclRule)>;

impl Store {
    /// Every guest's rules, in order.
    pub async fn all_acl_rules(&self) -> Result<HashMap<Uuid, Vec<StoredRule>>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, domain_uuid, kind, pattern, policy FROM console_acl \
             ORDER BY domain_uuid, position",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: HashMap<Uuid, Vec<StoredRule>> = HashMap::new();
        for row in rows {
            let uuid = row_uuid(&row, "console_acl", "domain_uuid")?;
            out.entry(uuid).or_default().push(stored_rule(&row)?);
        }
        Ok(out)
    }

    /// Makes `rules` the guest's rule list in one transaction: rows not kept are deleted,
    /// kept ones renumbered, new ones inserted. Returns the list with every id.
    ///
    /// Every statement writes: a transaction that read first would have to upgrade to a
    /// writer, which SQLite in WAL mode refuses outright (SQLITE_BUSY_SNAPSHOT, no busy
    /// wait) when the audit writer committed in between.
    pub async fn replace_acl_rules(
        &self,
        domain: Uuid,
        rules: RuleUpdate,
    ) -> Result<Vec<StoredRule>, StoreError> {
        let uuid = domain.to_string();
        let mut tx = self.pool().begin().await?;
        // Mark every row; the kept ones get their new positions, the rest are deleted.
        sqlx::query("UPDATE console_acl SET position = -1 WHERE domain_uuid = $1")
            .bind(&uuid)
            .execute(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rules.len());
        for (position, (id, rule)) in (0_i64..).zip(rules) {
            let id =
                match id {
                    Some(id) => {
                        let updated = sqlx::query(
                        "UPDATE console_acl SET position = $1 WHERE id = $2 AND domain_uuid = $3",
                    )
                    .bind(position)
                    .bind(id)
                    .bind(&uuid)
                    .execute(&mut *tx)
                    .await?;
                        if updated.rows_affected() != 1 {
                            return Err(StoreError::Corrupt(format!(
                                "console ACL rule {id} vanished during a change"
                            )));
                        }
                        id
                    }
                    None => sqlx::query_scalar(
                        "INSERT INTO console_acl (domain_uuid, position, kind, pattern, policy) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(&uuid)
                    .bind(position)
                    .bind(rule.kind.as_str())
                    .bind(&rule.pattern)
                    .bind(rule.policy.as_str())
                    .fetch_one(&mut *tx)
                    .await?,
                };
            out.push(StoredRule { id, rule });
        }
        sqlx::query("DELETE FROM console_acl WHERE domain_uuid = $1 AND position = -1")
            .bind(&uuid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(out)
    }
}

fn stored_rule(row: &sqlx::any::AnyRow) -> Result<StoredRule, StoreError> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |e: String| StoreError::Corrupt(format!("console ACL rule {id}: {e}"));
    let kind: String = row.try_get("kind")?;
    let policy: String = row.try_get("policy")?;
    Ok(StoredRule {
        id,
        rule: AclRule {
            kind: kind.parse().map_err(corrupt)?,
            pattern: row.try_get("pattern")?,
            policy: policy.parse().map_err(corrupt)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use vmgate_config::acl::{AclKind, AclPolicy};

    use super::*;
    use crate::store::DomainRecord;

    fn rule(pattern: &str, policy: AclPolicy) -> AclRule {
        AclRule {
            kind: AclKind::User,
            pattern: pattern.into(),
            policy,
        }
    }

    #[tokio::test]
    async fn ids_survive_reordering_and_rules_go_with_the_domain() {
        let (store, _dir) = Store::open_temp().await;
        let uuid = Uuid::new_v4();
        store
            .upsert_domain(&DomainRecord {
                uuid,
                name: "g".into(),
                definition: String::new(),
                autostart: false,
            })
            .await
            .expect("domain");
        let first = store
            .replace_acl_rules(
                uuid,
                vec![
                    (None, rule("alice", AclPolicy::Allow)),
                    (None, rule("bob", AclPolicy::Allow)),
                ],
            )
            .await
            .expect("insert");
        let (alice, bob) = (first[0].id, first[1].id);
        let second = store
            .replace_acl_rules(
                uuid,
                vec![
                    (None, rule("carol", AclPolicy::Deny)),
                    (Some(bob), first[1].rule.clone()),
                ],
            )
            .await
            .expect("reorder");
        assert_eq!(second[1].id, bob);
        assert!(second[0].id != alice && second[0].id != bob);
        let all = store.all_acl_rules().await.expect("all");
        assert_eq!(all[&uuid], second, "alice's rule is gone, order kept");

        store.delete_domain(uuid).await.expect("undefine");
        assert!(store.all_acl_rules().await.expect("all").is_empty());
    }
}
