//! Why a pull action was denied: the caller's own policy, or for another account's repository,
//! its repository policy, with the statement to add.

use crate::aws::repository::{self, PULL_ACTIONS, Refusal, Target};

use super::*;

pub(super) async fn denied_row(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    action: &str,
    message: &str,
    caller: Option<&(String, String)>,
) -> Row {
    const NAME: &str = PULL_PERMISSION;
    let arn = target.repository_arn();
    let owner = &target.registry.account;
    let detail = format!("AccessDeniedException: {action} refused: {message}");
    let code = Some("AccessDeniedException");
    let (principal, account) = match caller {
        Some((account, arn)) => (repository::principal_for(arn), Some(account.as_str())),
        None => ("the caller".to_string(), None),
    };
    let identity_fix = format!(
        "allow {} on {arn} for {principal} (the AWS managed policy AmazonEC2ContainerRegistryReadOnly does)",
        PULL_ACTIONS.join(", ")
    );
    let Some(account) = account.filter(|a| *a != owner.as_str()) else {
        return bad(
            Status::Fail,
            NAME,
            code,
            detail,
            format!("{identity_fix}, and check the repository policy has no Deny for it"),
        );
    };
    let statement = repository::pull_statement(&principal);
    let add = format!(
        "add this statement to the repository policy of '{}' in account {owner} (aws ecr set-repository-policy, or the console's Permissions tab): {statement}",
        target.repository
    );
    match repository::repository_policy(client, target).await {
        Ok(policy) => match repository::missing_pull_actions(&policy, &principal, account) {
            Ok(missing) if missing.is_empty() => bad(
                Status::Fail,
                NAME,
                code,
                format!(
                    "{detail}; the repository policy of account {owner} grants the pull actions to {principal}"
                ),
                format!("the caller's own account must allow it too: {identity_fix}"),
            ),
            Ok(missing) => bad(
                Status::Fail,
                NAME,
                code,
                format!(
                    "{detail}; the repository policy of account {owner} does not grant {} to {principal} or its account",
                    missing.join(", ")
                ),
                format!("{add}; and in account {account}, {identity_fix}"),
            ),
            Err(e) => bad(
                Status::Fail,
                NAME,
                code,
                format!("{detail}; the repository policy could not be read: {e}"),
                format!("{add}; and in account {account}, {identity_fix}"),
            ),
        },
        Err(Refusal::NoPolicy(_)) => bad(
            Status::Fail,
            NAME,
            code,
            format!(
                "{detail}; the repository in account {owner} has no repository policy, so no other account may pull from it"
            ),
            format!("{add}; and in account {account}, {identity_fix}"),
        ),
        Err(e) => bad(
            Status::Fail,
            NAME,
            code,
            format!(
                "{detail}; its repository policy could not be read ({} on GetRepositoryPolicy)",
                e.code().unwrap_or("error")
            ),
            format!(
                "ask the owner of account {owner} to {add}; and in account {account}, {identity_fix}"
            ),
        ),
    }
}
