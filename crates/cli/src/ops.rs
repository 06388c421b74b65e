//! Delegates (patients) and consortium membership (operators): one transaction each, shown
//! before it is sent.

use crate::{
    chain::{self, Chain},
    keys::KeyArgs,
    prompt, time,
};
use alloy::primitives::{Address, aliases::U40};
use carechain_contracts::{
    BreakGlassReason, ConsentRegistry, DelegateKind, MemberRole, OrgKind, ProviderRegistry, codes,
};
use eyre::{WrapErr, bail};

fn parse_named<T: Copy + std::fmt::Display>(all: &[T], text: &str, what: &str) -> eyre::Result<T> {
    all.iter()
        .copied()
        .find(|v| v.to_string().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(|v| v.to_string().to_lowercase()).collect();
            eyre::eyre!(
                "unknown {what} `{text}`: expected one of {}",
                names.join(", ")
            )
        })
}

/// Parses a delegate kind by name (`guardian`, `caregiver`, `proxy`).
pub(crate) fn delegate_kind(text: &str) -> eyre::Result<DelegateKind> {
    parse_named(&DelegateKind::ALL[1..], text, "delegate kind")
}

/// Parses an organisation kind by name (`hospital`, ..., `compliance`).
pub(crate) fn org_kind(text: &str) -> eyre::Result<OrgKind> {
    parse_named(&OrgKind::ALL[1..], text, "organisation kind")
}

/// Parses a member role by name (`practitioner`, `service`).
pub(crate) fn member_role(text: &str) -> eyre::Result<MemberRole> {
    parse_named(MemberRole::ALL, text, "member role")
}

/// Parses a break-glass reason by name, with or without dashes
/// (`life-threatening`, `LifeThreatening`).
pub(crate) fn break_glass_reason(text: &str) -> eyre::Result<BreakGlassReason> {
    let squashed: String = text.chars().filter(|c| *c != '-' && *c != '_').collect();
    parse_named(&BreakGlassReason::ALL[1..], &squashed, "break-glass reason").map_err(|_| {
        eyre::eyre!(
            "unknown break-glass reason `{text}`: expected patient-unconscious, life-threatening, imminent-risk-of-harm or patient-unable-to-communicate"
        )
    })
}

/// `break-glass open`: an emergency session of the signing member key's organisation.
pub(crate) async fn break_glass_open(
    chain: &Chain,
    key: &KeyArgs,
    patient: Address,
    reason: BreakGlassReason,
    seconds: u32,
    yes: bool,
) -> eyre::Result<()> {
    let signer = key.signer()?;
    eprintln!(
        "Emergency access to be opened (chain {}):\n  patient    {}\n  by         {} (and the rest of its organisation)\n  \
         reason     {reason}\n  for        {}\n  \
         Reads are allowed for purpose ETREAT only; every one is audited and reviewed by compliance.",
        chain.manifest.chain_id,
        chain::show(patient),
        chain::show(signer.address()),
        time::show(u64::from(seconds))
    );
    prompt::confirm("Open break-glass access?", "open break-glass access", yes)?;
    let provider = chain.with_signer(&signer)?;
    let registry = ConsentRegistry::new(chain.manifest.contracts.consent_registry, &provider);
    let tx = chain::mined(
        registry
            .openBreakGlass(patient, reason.into(), seconds)
            .send()
            .await,
        "opening break-glass access",
    )
    .await?;
    println!("break-glass access open: transaction {tx}");
    Ok(())
}

/// `break-glass close`.
pub(crate) async fn break_glass_close(
    chain: &Chain,
    key: &KeyArgs,
    patient: Address,
    yes: bool,
) -> eyre::Result<()> {
    let signer = key.signer()?;
    eprintln!(
        "Emergency access of {}'s organisation to {} to be closed.",
        chain::show(signer.address()),
        chain::show(patient)
    );
    prompt::confirm("Close break-glass access?", "close break-glass access", yes)?;
    let provider = chain.with_signer(&signer)?;
    let registry = ConsentRegistry::new(chain.manifest.contracts.consent_registry, &provider);
    let tx = chain::mined(
        registry.closeBreakGlass(patient).send().await,
        "closing break-glass access",
    )
    .await?;
    println!("break-glass access closed: transaction {tx}");
    Ok(())
}

/// `delegate add`.
pub(crate) async fn delegate_add(
    chain: &Chain,
    key: &KeyArgs,
    delegate: Address,
    kind: DelegateKind,
    scope: Option<crate::consent::Scope>,
    valid_until: u64,
    yes: bool,
) -> eyre::Result<()> {
    let signer = key.signer()?;
    if delegate == signer.address() {
        bail!("--delegate is your own address: name the guardian's, caregiver's or proxy's wallet");
    }
    let may = match (kind, &scope) {
        (DelegateKind::Proxy, Some(scope)) => format!(
            "A proxy may read and search {}, grant only within that scope for the patient, and revoke only what it granted.",
            codes::ResourceType::from_bits(scope.resource_types)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (DelegateKind::Caregiver, _) => {
            "A caregiver may read and search all of the patient's records, but never changes their consent.".into()
        }
        _ => "A guardian may read and search all of the patient's records, and grant or revoke consent for them (until the delegation ends).".into(),
    };
    eprintln!(
        "Delegate to be set (chain {}):\n  patient    {}\n  delegate   {}\n  kind       {kind}\n  until      {}\n  {may}",
        chain.manifest.chain_id,
        chain::show(signer.address()),
        chain::show(delegate),
        time::show(valid_until)
    );
    prompt::confirm("Add this delegate?", "add a delegate", yes)?;
    let provider = chain.with_signer(&signer)?;
    let registry = ConsentRegistry::new(chain.manifest.contracts.consent_registry, &provider);
    let sent = match scope {
        Some(scope) => {
            registry
                .setProxy(
                    delegate,
                    U40::from(valid_until),
                    scope.resource_types,
                    scope.actions,
                    scope.purposes,
                )
                .send()
                .await
        }
        None => {
            registry
                .setDelegate(delegate, kind.into(), U40::from(valid_until))
                .send()
                .await
        }
    };
    let tx = chain::mined(sent, "adding the delegate").await?;
    println!("delegate set: transaction {tx}");
    Ok(())
}

/// `delegate remove`.
pub(crate) async fn delegate_remove(
    chain: &Chain,
    key: &KeyArgs,
    delegate: Address,
    yes: bool,
) -> eyre::Result<()> {
    let signer = key.signer()?;
    let current = chain
        .consents()
        .delegateOf(signer.address(), delegate)
        .call()
        .await
        .wrap_err("cannot read the delegate")?;
    if current.kind == 0 {
        bail!(
            "{} is not a delegate of {}: nothing to remove",
            chain::show(delegate),
            chain::show(signer.address())
        );
    }
    eprintln!(
        "Delegate to be removed: {} (of patient {})",
        chain::show(delegate),
        chain::show(signer.address())
    );
    prompt::confirm("Remove this delegate?", "remove a delegate", yes)?;
    let provider = chain.with_signer(&signer)?;
    let registry = ConsentRegistry::new(chain.manifest.contracts.consent_registry, &provider);
    let tx = chain::mined(
        registry.removeDelegate(delegate).send().await,
        "removing the delegate",
    )
    .await?;
    println!("delegate removed: transaction {tx}");
    Ok(())
}

/// A ProviderRegistry operation.
#[derive(Debug, Clone)]
pub(crate) enum Membership {
    /// Admit an organisation.
    Admit {
        /// Its address.
        org: Address,
        /// Its kind.
        kind: OrgKind,
        /// Its display name (public, on chain).
        name: String,
    },
    /// Suspend an organisation.
    SuspendOrg(Address),
    /// Reinstate an organisation.
    ReinstateOrg(Address),
    /// Link a member key to an organisation.
    AddMember {
        /// The organisation.
        org: Address,
        /// The key.
        key: Address,
        /// What the key is for.
        role: MemberRole,
    },
    /// Suspend a member key.
    SuspendMember(Address),
    /// Reinstate a member key.
    ReinstateMember(Address),
    /// Retire a member key for good.
    RetireMember(Address),
    /// Replace a member key.
    RotateMember {
        /// The key retired.
        old: Address,
        /// The key that takes its place.
        new: Address,
    },
}

impl Membership {
    fn describe(&self) -> String {
        match self {
            Self::Admit { org, kind, name } => format!(
                "admit organisation {} ({kind}, \"{name}\")",
                chain::show(*org)
            ),
            Self::SuspendOrg(org) => format!(
                "suspend organisation {}: every key of it is denied everywhere at once",
                chain::show(*org)
            ),
            Self::ReinstateOrg(org) => format!("reinstate organisation {}", chain::show(*org)),
            Self::AddMember { org, key, role } => format!(
                "add member key {} ({role}) to organisation {}",
                chain::show(*key),
                chain::show(*org)
            ),
            Self::SuspendMember(key) => format!(
                "suspend member key {}: denied everywhere at once",
                chain::show(*key)
            ),
            Self::ReinstateMember(key) => format!("reinstate member key {}", chain::show(*key)),
            Self::RetireMember(key) => format!(
                "retire member key {} for good (cannot be undone)",
                chain::show(*key)
            ),
            Self::RotateMember { old, new } => format!(
                "replace member key {} by {} (the old key is retired)",
                chain::show(*old),
                chain::show(*new)
            ),
        }
    }
}

/// Sends one ProviderRegistry operation.
pub(crate) async fn membership(
    chain: &Chain,
    key: &KeyArgs,
    operation: Membership,
    yes: bool,
) -> eyre::Result<()> {
    let signer = key.signer()?;
    let what = operation.describe();
    eprintln!(
        "About to {what}\n  on chain {} (ProviderRegistry {}), signed by {}",
        chain.manifest.chain_id,
        chain::show(chain.manifest.contracts.provider_registry),
        chain::show(signer.address())
    );
    prompt::confirm("Proceed?", "change the consortium registry", yes)?;
    let provider = chain.with_signer(&signer)?;
    let registry = ProviderRegistry::new(chain.manifest.contracts.provider_registry, &provider);
    let sent = match operation {
        Membership::Admit { org, kind, name } => {
            registry
                .admitOrganisation(org, kind.into(), name)
                .send()
                .await
        }
        Membership::SuspendOrg(org) => registry.suspendOrganisation(org).send().await,
        Membership::ReinstateOrg(org) => registry.reinstateOrganisation(org).send().await,
        Membership::AddMember { org, key, role } => {
            registry.addMember(org, key, role.into()).send().await
        }
        Membership::SuspendMember(key) => registry.suspendMember(key).send().await,
        Membership::ReinstateMember(key) => registry.reinstateMember(key).send().await,
        Membership::RetireMember(key) => registry.retireMember(key).send().await,
        Membership::RotateMember { old, new } => registry.rotateMemberKey(old, new).send().await,
    };
    let tx = chain::mined(sent, &format!("cannot {what}")).await?;
    println!("done: transaction {tx}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(org_kind("compliance").ok(), Some(OrgKind::Compliance));
        assert_eq!(org_kind("Hospital").ok(), Some(OrgKind::Hospital));
        assert!(org_kind("none").is_err());
        assert_eq!(delegate_kind("guardian").ok(), Some(DelegateKind::Guardian));
        assert!(delegate_kind("None").is_err());
        assert_eq!(member_role("service").ok(), Some(MemberRole::Service));
        let err = member_role("doctor").expect_err("unknown");
        assert!(err.to_string().contains("practitioner, service"), "{err}");
    }
}
