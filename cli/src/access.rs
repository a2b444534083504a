//! `meshca access`: the Kubernetes RBAC meshca needs in a cluster, derived from the kinds it
//! delivers there — exactly its secrets and trust-anchor ConfigMaps, and the istiod restart.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use meshca_core::kind::{Input, Layout};
use meshca_core::{Kind, KindSpec};

#[derive(Debug, Args)]
#[command(
    about = "Print the Kubernetes Role and RoleBinding meshca needs in a cluster, per namespace",
    long_about = "\
Print the Kubernetes Role and RoleBinding meshca needs in a cluster, per namespace.

For each namespace a kind lands in: get and update of its secrets (and its trust-anchor
ConfigMap, for linkerd-issuer) by name, create of secrets (and ConfigMaps); in istio-system,
list and patch of Deployments (istiod's restart) and list of DaemonSets (whether ztunnel
enforces CRLs). Nothing else: no cluster-wide access, no other secret. Bound to the Kubernetes
group an EKS access entry maps meshca's role to (--group), or to a user (--user). The namespaces
must exist (Istio's, Linkerd's or TSB's install makes them).

With --crl-readers, also a ClusterRole to list pods in every namespace: in CRL mode meshca then
names the pods whose sidecar was injected before Istio 1.27 and ignores the CRLs until restarted.
Kubernetes cannot grant labels and annotations alone, so this lets meshca read pod specs too;
meshca reads only the injector's label and annotation. Without it, reports say the sidecars were
not checked.",
    after_help = "\
Examples:
  meshca access | kubectl apply -f -          # istio-cacerts: istio-system
  meshca access --kind istio-cacerts --kind linkerd-issuer | kubectl apply -f -
  meshca access --crl-readers | kubectl apply -f -   # CRL mode: judge every sidecar too
  aws eks create-access-entry --cluster-name CLUSTER --principal-arn ROLE_ARN --kubernetes-groups meshca

Exit status: 0 printed; 1 an unknown kind; 2 a usage error."
)]
pub struct AccessArgs {
    /// A kind delivered into the cluster (repeatable).
    #[arg(
        long = "kind",
        value_name = "KIND",
        default_value = "istio-cacerts",
        long_help = crate::issue::kinds_help("A kind delivered into the cluster (repeatable):")
    )]
    kinds: Vec<String>,

    /// xcp-central, mpc: namespace of TSB's management-plane secrets [default: tsb].
    #[arg(long, value_name = "NS")]
    tsb_namespace: Option<String>,

    /// cert-manager-ca: its secret as NAMESPACE/NAME [default: cert-manager/istio-ca].
    #[arg(long, value_name = "NS/NAME")]
    cert_manager_secret: Option<String>,

    /// The Kubernetes group bound (what the EKS access entry's --kubernetes-groups names).
    #[arg(long, value_name = "GROUP", default_value = "meshca")]
    group: String,

    /// Bind this user instead of the group.
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// Also let meshca list pods in every namespace, to find sidecars that ignore the CRLs.
    #[arg(long)]
    crl_readers: bool,
}

/// What meshca touches in one namespace.
#[derive(Default)]
struct Grants {
    secrets: Vec<String>,
    configmaps: Vec<String>,
    istiod: bool,
}

pub fn run(args: AccessArgs) -> Result<ExitCode> {
    let mut by_namespace: BTreeMap<String, Grants> = BTreeMap::new();
    for name in &args.kinds {
        let spec = landing(name.parse::<Kind>()?, &args)?;
        let landing = spec.landing();
        let g = by_namespace.entry(landing.namespace.clone()).or_default();
        g.secrets.push(landing.name.clone());
        if let Some(a) = landing.anchors {
            g.configmaps.push(a.name.to_string());
        }
        g.istiod |= landing.layout == Layout::IstioCacerts;
    }
    let subject = match &args.user {
        Some(user) => {
            format!("{{kind: User, name: {user:?}, apiGroup: rbac.authorization.k8s.io}}")
        }
        None => format!(
            "{{kind: Group, name: {:?}, apiGroup: rbac.authorization.k8s.io}}",
            args.group
        ),
    };
    let mut docs: Vec<String> = by_namespace
        .iter()
        .map(|(ns, g)| role(ns, g, &subject))
        .collect();
    if args.crl_readers {
        docs.push(pod_reader(&subject));
    }
    print!("{}", docs.join("---\n"));
    Ok(ExitCode::SUCCESS)
}

/// Where `kind` lands, with the names the flags give it.
fn landing(kind: Kind, args: &AccessArgs) -> Result<KindSpec> {
    let mut spec = KindSpec::new(kind);
    let takes = |input| kind.profile().takes(input);
    if takes(Input::TsbNamespace)
        && let Some(ns) = &args.tsb_namespace
    {
        spec.namespace.clone_from(ns);
    }
    if takes(Input::SecretName)
        && let Some(s) = &args.cert_manager_secret
    {
        let (ns, name) = crate::target::namespace_name("--cert-manager-secret", s)?;
        (spec.namespace, spec.secret) = (ns.into(), name.into());
    }
    if spec.namespace.is_empty() {
        bail!("{kind}: no namespace");
    }
    Ok(spec)
}

/// The Role and RoleBinding `meshca` in `ns`.
fn role(ns: &str, g: &Grants, subject: &str) -> String {
    let names = |v: &[String]| {
        v.iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rules = vec![
        format!(
            "- {{apiGroups: [\"\"], resources: [secrets], resourceNames: [{}], verbs: [get, update]}}",
            names(&g.secrets)
        ),
        "- {apiGroups: [\"\"], resources: [secrets], verbs: [create]}".to_string(),
    ];
    if !g.configmaps.is_empty() {
        rules.push(format!("- {{apiGroups: [\"\"], resources: [configmaps], resourceNames: [{}], verbs: [get, update]}}", names(&g.configmaps)));
        rules.push("- {apiGroups: [\"\"], resources: [configmaps], verbs: [create]}".to_string());
    }
    if g.istiod {
        rules.push(
            "- {apiGroups: [apps], resources: [deployments], verbs: [list, patch]}".to_string(),
        );
        rules.push("- {apiGroups: [apps], resources: [daemonsets], verbs: [list]}".to_string());
    }
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: meshca, namespace: {ns}, labels: {{app.kubernetes.io/managed-by: meshca}}}}\nrules:\n{}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: meshca, namespace: {ns}, labels: {{app.kubernetes.io/managed-by: meshca}}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: meshca}}\nsubjects: [{subject}]\n",
        rules.join("\n")
    )
}

/// The ClusterRole and binding `meshca-crl-readers`: list of pods everywhere, to judge which
/// sidecars read the CRLs.
fn pod_reader(subject: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: meshca-crl-readers, labels: {{app.kubernetes.io/managed-by: meshca}}}}\n\
         rules:\n- {{apiGroups: [\"\"], resources: [pods], verbs: [list]}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: meshca-crl-readers, labels: {{app.kubernetes.io/managed-by: meshca}}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: meshca-crl-readers}}\nsubjects: [{subject}]\n"
    )
}
