//! The functions read exactly the settings the deploy code knows (`infra/cdk/lib/settings.json`,
//! which CDK, Terraform and the configuration reference are checked against), and each default
//! the list states is the one the functions apply: a setting added here without the list, or a
//! default changed on one side only, fails.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use meshca_lambda::Config;
use serde_json::Value;

const SETTINGS: &str = include_str!("../../../infra/cdk/lib/settings.json");

fn listed() -> Vec<Value> {
    let doc: Value = serde_json::from_str(SETTINGS).expect("settings.json is JSON");
    doc["settings"].as_array().expect("a settings list").clone()
}

/// Each way the functions can be configured, enough to reach every variable they read.
fn configurations() -> Vec<BTreeMap<&'static str, &'static str>> {
    let pca = BTreeMap::from([
        (
            "MESHCA_CA_ARN",
            "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/abc",
        ),
        ("MESHCA_REGIONS", "eu-west-1"),
        ("MESHCA_RENEW_BEFORE_DAYS", "30"),
        (
            "MESHCA_XCP_CA_ARN",
            "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/xcp",
        ),
        ("MESHCA_CA_ROLE_ARN", "arn:aws:iam::111122223333:role/ca"),
        ("MESHCA_SECURITY_ACCOUNT", "777788889999"),
    ]);
    let vault = |auth: &'static str| {
        BTreeMap::from([
            ("MESHCA_AUTHORITY", "vault"),
            ("MESHCA_REGIONS", "eu-west-1"),
            ("MESHCA_VAULT_ADDR", "https://vault.example:8200"),
            ("MESHCA_VAULT_AUTH", auth),
            ("MESHCA_VAULT_ROLE_ID", "role"),
            (
                "MESHCA_VAULT_SECRET_ID_ARN",
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:id",
            ),
            ("MESHCA_VAULT_AWS_ROLE", "meshca"),
        ])
    };
    vec![pca, vault("approle"), vault("aws-iam")]
}

/// The variables `Config::from` asks for, given `env`.
fn read_by_config(env: &BTreeMap<&str, &str>) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let lookup = |k: &str| {
        asked.borrow_mut().insert(k.to_string());
        env.get(k).map(|v| v.to_string())
    };
    Config::from(&lookup).unwrap_or_else(|e| panic!("{env:?}: {e}"));
    asked.into_inner()
}

#[test]
fn the_functions_read_exactly_the_listed_settings() {
    let mut read = BTreeSet::new();
    for env in configurations() {
        read.extend(read_by_config(&env));
    }
    read.remove("AWS_REGION"); // Lambda's own, the fallback of MESHCA_REGIONS
    let listed: BTreeSet<String> = listed()
        .iter()
        .map(|s| s["env"].as_str().unwrap().to_string())
        .collect();
    let unlisted: Vec<_> = read.difference(&listed).collect();
    let unread: Vec<_> = listed.difference(&read).collect();
    assert!(
        unlisted.is_empty(),
        "read by the functions but missing from infra/cdk/lib/settings.json: {unlisted:?}"
    );
    assert!(
        unread.is_empty(),
        "in infra/cdk/lib/settings.json but never read by the functions: {unread:?}"
    );
}

#[test]
fn every_listed_default_is_the_functions_own() {
    for s in listed() {
        let (var, Some(default)) = (s["env"].as_str().unwrap(), s["default"].as_str()) else {
            continue;
        };
        for base in configurations() {
            if base.contains_key(var) {
                continue;
            }
            let unset = format!(
                "{:?}",
                Config::from(&|k: &str| base.get(k).map(|v| v.to_string())).unwrap()
            );
            let mut with = base.clone();
            with.insert(var, default);
            let set =
                Config::from(&|k: &str| with.get(k).map(|v| v.to_string())).unwrap_or_else(|e| {
                    panic!("{var}={default:?}, the listed default, is refused: {e}")
                });
            assert_eq!(
                format!("{set:?}"),
                unset,
                "{var}={default:?} (the listed default) is not what the functions do without it"
            );
        }
    }
}

#[test]
fn every_direct_setting_has_an_example_the_functions_accept() {
    for s in listed().iter().filter(|s| s["mapping"] == "direct") {
        let var = s["env"].as_str().unwrap();
        let example = s["example"]
            .as_str()
            .unwrap_or_else(|| panic!("{var}: a direct setting needs an example"));
        for (names, how) in [
            ("cdk", s["cdk"].as_str()),
            ("terraform", s["terraform"].as_str()),
        ] {
            assert!(
                how.is_some(),
                "{var}: a direct setting needs a {names} name"
            );
        }
        let mut env = configurations().remove(0);
        env.insert(var, example);
        let unset = format!(
            "{:?}",
            Config::from(&|k: &str| configurations()[0].get(k).map(|v| v.to_string())).unwrap()
        );
        let set = Config::from(&|k: &str| env.get(k).map(|v| v.to_string()))
            .unwrap_or_else(|e| panic!("{var}={example:?}: {e}"));
        assert_ne!(
            format!("{set:?}"),
            unset,
            "{var}={example:?} changes nothing: the example should differ from the default"
        );
    }
}

#[test]
fn the_names_agree_across_tools() {
    let snake = |cdk: &str| -> String {
        cdk.chars()
            .flat_map(|c| {
                if c.is_ascii_uppercase() {
                    vec!['_', c.to_ascii_lowercase()]
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    for s in listed() {
        let var = s["env"].as_str().unwrap();
        match (s["cdk"].as_str(), s["terraform"].as_str()) {
            (Some(cdk), Some(tf)) if s["mapping"] != "deployment" => assert_eq!(
                snake(cdk),
                tf,
                "{var}: CDK {cdk} and Terraform {tf} are not one name"
            ),
            (None, None) => assert_eq!(
                s["mapping"], "deployment",
                "{var}: only what the deployment sets itself has no name"
            ),
            _ => {}
        }
        assert!(
            s["doc"].as_str().is_some_and(|d| !d.is_empty()),
            "{var} has no doc"
        );
    }
}
