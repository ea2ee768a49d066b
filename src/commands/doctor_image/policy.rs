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
    // Without GetCallerIdentity, AWS's denial usually names the caller itself.
    let named = caller.cloned().or_else(|| caller_in(message));
    let Some((account, arn_of_caller)) = named else {
        return unknown_caller(target, detail, &arn);
    };
    let principal = repository::principal_for(&arn_of_caller);
    let account = account.as_str();
    let identity_fix = format!(
        "allow {} on {arn} for {principal} (the AWS managed policy AmazonEC2ContainerRegistryReadOnly does)",
        PULL_ACTIONS.join(", ")
    );
    if account == owner.as_str() {
        return bad(
            Status::Fail,
            NAME,
            code,
            detail,
            format!("{identity_fix}, and check the repository policy has no Deny for it"),
        );
    }
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

/// The caller's account and ARN from a denial's text (`User: ARN is not authorized ...`).
fn caller_in(message: &str) -> Option<(String, String)> {
    let arn = message.split("User: ").nth(1)?.split_whitespace().next()?;
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (account.to_string(), arn.to_string()))
}

/// A denial with the caller unknown: whether the repository is in its own account is unknown
/// too, so both fixes are given.
fn unknown_caller(target: &Target, detail: String, arn: &str) -> Row {
    let owner = &target.registry.account;
    let statement = repository::pull_statement(&format!(
        "arn:{}:iam::CALLER_ACCOUNT:role/CALLER_ROLE",
        partition(&target.registry.region)
    ));
    bad(
        Status::Fail,
        PULL_PERMISSION,
        Some("AccessDeniedException"),
        format!(
            "{detail}; the caller is unknown (GetCallerIdentity failed), so whether it is in the repository's account {owner} is unknown"
        ),
        format!(
            "in the caller's account, allow {} on {arn} for the caller (the AWS managed policy AmazonEC2ContainerRegistryReadOnly does); if the caller is not in account {owner}, also add to the repository policy of '{}' in account {owner} (aws ecr set-repository-policy): {statement}, with the caller's role ARN; allowing sts:GetCallerIdentity lets this check tell which",
            PULL_ACTIONS.join(", "),
            target.repository
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_is_read_from_a_denial() {
        let m = "User: arn:aws:sts::123456789012:assumed-role/node/i-1 is not authorized to perform: ecr:BatchGetImage on resource: x";
        assert_eq!(
            caller_in(m),
            Some((
                "123456789012".into(),
                "arn:aws:sts::123456789012:assumed-role/node/i-1".into()
            ))
        );
        assert_eq!(caller_in("Access denied"), None);
        assert_eq!(caller_in("User: anonymous is not authorized"), None);
    }
}
