//! The proxy pipeline as data: Swift's `[pipeline:main]`, a list of filter
//! names in front of the proxy application, checked and completed as
//! Swift completes it, then built stage by stage.
//!
//! Names are Swift's: a configuration written for Swift's proxy
//! (`proxy-logging`, `cache`, `container-quotas`, ...) means the same
//! here. A name apus does not provide yet is an error at startup, never a
//! silently missing filter; the default pipeline is Swift 2.38's with
//! `domain_remap` and `staticweb` added, less the filters apus does not
//! have yet. Like Swift, the pipeline always
//! gets its required filters (`catch_errors`, `gatekeeper`, `copy`,
//! `dlo`, ...), each inserted where Swift inserts it.
//!
//! What runs is what `/info` shows: each filter that Swift registers in
//! `/info` brings its entry with the settings it runs with.

use std::fmt;
use std::sync::Arc;

use crate::config::ProxyConfig;
use crate::info::InfoLookup;
use crate::service::SharedService;

/// Swift 2.38's default pipeline (`proxy-server.conf-sample`), without
/// the application at its end.
pub const SWIFT_DEFAULT_PIPELINE: &str = "catch_errors gatekeeper healthcheck proxy-logging cache \
     listing_formats container_sync bulk tempurl ratelimit tempauth copy container-quotas \
     account-quotas slo dlo versioned_writes symlink proxy-logging";

/// apus's default: Swift's, with `domain_remap`, `etag_quoter`,
/// `formpost`, `s3api` and `staticweb` where Swift's functional-test
/// setup puts them, and apus's `console` right after the auth filter it
/// relies on. Each does nothing until asked (a storage domain
/// configured; an account or container flag; a form POST; an S3-signed
/// request; a container's `Web-*` metadata; a path under `/console`).
pub const APUS_DEFAULT_PIPELINE: &str = "catch_errors gatekeeper healthcheck proxy-logging cache \
     domain_remap etag-quoter listing_formats container_sync bulk tempurl formpost ratelimit s3api tempauth \
     console staticweb copy \
     container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging";

/// What a filter is given when it is built.
pub struct FilterContext {
    pub config: Arc<ProxyConfig>,
    /// Account and container info, cached for the whole pipeline.
    pub info: Arc<dyn InfoLookup>,
}

type Build = fn(&FilterContext, SharedService) -> SharedService;
/// A filter's `/info` entries: (key, settings), usually one under its
/// own name.
type InfoEntry = fn(&ProxyConfig) -> Vec<(&'static str, serde_json::Value)>;

/// What a name in the pipeline stands for in apus.
enum Stage {
    /// A stage of its own, built over the rest of the pipeline, with the
    /// entry it registers in `/info` if Swift's registers one.
    Filter {
        build: Build,
        info: Option<InfoEntry>,
    },
    /// A Swift filter whose job apus does elsewhere; naming it is
    /// accepted and builds nothing. The text says where the job is done.
    Elsewhere(&'static str),
}

struct Entry {
    name: &'static str,
    stage: Stage,
}

/// Every name apus accepts, under Swift's entry-point names.
const ENTRIES: &[Entry] = &[
    Entry {
        name: "catch_errors",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::catch_errors::CatchErrors::new(next)),
            info: None,
        },
    },
    Entry {
        name: "gatekeeper",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::gatekeeper::Gatekeeper::new(next)),
            info: None,
        },
    },
    Entry {
        name: "healthcheck",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::healthcheck::Healthcheck::new(next)),
            info: None,
        },
    },
    Entry {
        name: "bulk",
        stage: Stage::Filter {
            build: |ctx, next| Arc::new(crate::bulk::Bulk::new(next, ctx.config.bulk.clone())),
            info: Some(|config| {
                vec![
                    ("bulk_upload", crate::bulk::upload_info(&config.bulk)),
                    ("bulk_delete", crate::bulk::delete_info(&config.bulk)),
                ]
            }),
        },
    },
    Entry {
        name: "domain_remap",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::domain_remap::DomainRemap::new(
                    next,
                    ctx.config.domain_remap.clone(),
                ))
            },
            info: Some(|config| {
                if config.domain_remap.storage_domain.is_empty() {
                    Vec::new()
                } else {
                    vec![(
                        "domain_remap",
                        crate::domain_remap::info(&config.domain_remap),
                    )]
                }
            }),
        },
    },
    Entry {
        name: "etag_quoter",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::etag_quoter::EtagQuoter::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.etag_quoter_by_default,
                ))
            },
            info: Some(|config| {
                vec![(
                    "etag_quoter",
                    crate::etag_quoter::info(config.etag_quoter_by_default),
                )]
            }),
        },
    },
    Entry {
        name: "crossdomain",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::crossdomain::CrossDomain::new(
                    next,
                    &ctx.config.cross_domain_policy,
                ))
            },
            info: Some(|_| vec![("crossdomain", serde_json::json!({}))]),
        },
    },
    Entry {
        name: "read_only",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::read_only::ReadOnly::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.read_only,
                ))
            },
            // Swift registers it only for a read-only cluster.
            info: Some(|config| {
                if config.read_only.read_only {
                    vec![("read_only", serde_json::json!({}))]
                } else {
                    Vec::new()
                }
            }),
        },
    },
    Entry {
        name: "staticweb",
        stage: Stage::Filter {
            build: |ctx, next| Arc::new(crate::staticweb::StaticWeb::new(next, ctx.info.clone())),
            info: Some(|_| vec![("staticweb", serde_json::json!({}))]),
        },
    },
    Entry {
        name: "tempurl",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::tempurl::TempUrl::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.tempurl.clone(),
                ))
            },
            info: Some(|config| vec![("tempurl", crate::tempurl::info(&config.tempurl))]),
        },
    },
    Entry {
        name: "formpost",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::formpost::FormPost::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.formpost.clone(),
                ))
            },
            info: Some(|config| vec![("formpost", crate::formpost::info(&config.formpost))]),
        },
    },
    Entry {
        name: "name_check",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::name_check::NameCheck::new(
                    next,
                    ctx.config.name_check.clone(),
                ))
            },
            info: Some(|config| vec![("name_check", crate::name_check::info(&config.name_check))]),
        },
    },
    Entry {
        name: "ratelimit",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::ratelimit::RateLimit::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.ratelimit.clone(),
                ))
            },
            info: Some(|config| vec![("ratelimit", crate::ratelimit::info(&config.ratelimit))]),
        },
    },
    Entry {
        name: "s3api",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(
                    crate::s3api::S3Api::new(&ctx.config, next)
                        .with_object_versioning(object_versioning_runs(&ctx.config)),
                )
            },
            info: Some(|config| vec![("s3api", crate::s3api::info(&config.s3api))]),
        },
    },
    Entry {
        name: "tempauth",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::tempauth::TempAuth::new(
                    ctx.config.tempauth.clone(),
                    next,
                ))
            },
            info: Some(|_| vec![("tempauth", serde_json::json!({"account_acls": true}))]),
        },
    },
    Entry {
        name: "authtoken",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::keystone::AuthToken::new(
                    ctx.config.keystone.clone(),
                    next,
                ))
            },
            info: None,
        },
    },
    Entry {
        name: "keystoneauth",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::keystone::KeystoneAuth::new(
                    ctx.config.keystone.clone(),
                    ctx.info.clone(),
                    next,
                ))
            },
            // Swift's keystoneauth registers nothing in /info.
            info: None,
        },
    },
    Entry {
        name: "console",
        stage: Stage::Filter {
            build: |ctx, next| Arc::new(crate::console::Console::new(next, ctx.config.clone())),
            info: None,
        },
    },
    Entry {
        name: "copy",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::copy::Copy::new(next)),
            info: None,
        },
    },
    Entry {
        name: "container_quotas",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::quotas::ContainerQuotas::new(next, ctx.info.clone()))
            },
            info: Some(|_| vec![("container_quotas", serde_json::json!({}))]),
        },
    },
    Entry {
        name: "account_quotas",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::quotas::AccountQuotas::new(
                    next,
                    ctx.info.clone(),
                    ctx.config.clone(),
                ))
            },
            info: Some(|_| vec![("account_quotas", serde_json::json!({}))]),
        },
    },
    Entry {
        name: "slo",
        stage: Stage::Filter {
            build: |ctx, next| {
                Arc::new(crate::slo::Slo::new(
                    next,
                    ctx.config.slo.clone(),
                    ctx.config.hash.clone(),
                ))
            },
            info: Some(|config| vec![("slo", crate::slo::info(&config.slo))]),
        },
    },
    Entry {
        name: "dlo",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::dlo::Dlo::new(next)),
            info: None,
        },
    },
    Entry {
        name: "versioned_writes",
        stage: Stage::Filter {
            // Swift's filter is both modes in one: legacy versioning over
            // object versioning, each only when allowed.
            build: |ctx, next| {
                let versioning = &ctx.config.versioning;
                let mut next = next;
                if object_versioning_runs(&ctx.config) {
                    next = Arc::new(crate::object_versioning::ObjectVersioning::new(
                        next,
                        ctx.info.clone(),
                        ctx.config.clone(),
                    ));
                }
                if versioning.allow_versioned_writes {
                    next = Arc::new(crate::versioned_writes::VersionedWrites::new(
                        next,
                        ctx.info.clone(),
                    ));
                }
                next
            },
            info: Some(|config| {
                let mut entries = Vec::new();
                if config.versioning.allow_versioned_writes {
                    entries.push(("versioned_writes", crate::versioned_writes::info()));
                }
                if object_versioning_runs(config) {
                    entries.push(("object_versioning", serde_json::json!({})));
                }
                entries
            }),
        },
    },
    Entry {
        name: "symlink",
        stage: Stage::Filter {
            build: |ctx, next| Arc::new(crate::symlink::Symlink::new(next, ctx.config.symloop_max)),
            info: Some(|config| {
                let max = crate::symlink::effective_symloop_max(config.symloop_max);
                vec![("symlink", crate::symlink::info(max))]
            }),
        },
    },
    Entry {
        name: "proxy_logging",
        stage: Stage::Elsewhere("catch_errors logs every request"),
    },
    Entry {
        name: "memcache",
        stage: Stage::Elsewhere("account and container info is cached in the proxy's memory"),
    },
    Entry {
        name: "listing_formats",
        stage: Stage::Filter {
            build: |_, next| Arc::new(crate::listing_formats::ListingFormats::new(next)),
            info: None,
        },
    },
];

/// Object versioning stores versions behind links, so it runs only with
/// the `symlink` filter (Swift refuses to start without it; apus leaves
/// it out and says so in `/info` by its absence).
fn object_versioning_runs(config: &ProxyConfig) -> bool {
    config.versioning.allow_object_versioning && config.pipeline.stages().contains(&"symlink")
}

/// A filter Swift adds to every pipeline that lacks it, placed right
/// after the last of `after` present (at the front when none is).
pub struct Required {
    pub name: &'static str,
    pub after: fn(&[String]) -> Vec<&'static str>,
}

/// Swift 2.38's required filters (`swift.proxy.server.required_filters`).
pub const SWIFT_REQUIRED: &[Required] = &[
    Required {
        name: "catch_errors",
        after: |_| vec![],
    },
    Required {
        name: "gatekeeper",
        after: |pipe| {
            if pipe.first().map(String::as_str) == Some("catch_errors") {
                vec!["catch_errors"]
            } else {
                vec![]
            }
        },
    },
    Required {
        name: "listing_formats",
        after: |_| vec!["catch_errors", "gatekeeper", "proxy_logging", "memcache"],
    },
    Required {
        name: "copy",
        after: |_| {
            vec![
                "staticweb",
                "tempauth",
                "keystoneauth",
                "catch_errors",
                "gatekeeper",
                "proxy_logging",
            ]
        },
    },
    Required {
        name: "dlo",
        after: |_| {
            vec![
                "copy",
                "staticweb",
                "tempauth",
                "keystoneauth",
                "catch_errors",
                "gatekeeper",
                "proxy_logging",
            ]
        },
    },
    Required {
        name: "versioned_writes",
        after: |_| {
            vec![
                "slo",
                "dlo",
                "copy",
                "staticweb",
                "tempauth",
                "keystoneauth",
                "catch_errors",
                "gatekeeper",
                "proxy_logging",
            ]
        },
    },
];

/// Swift's spelling of a pipeline name as its entry point: section names
/// of the sample configuration (`proxy-logging`, `cache`) map to the
/// filters they load.
pub fn canonical_name(name: &str) -> String {
    match name {
        "cache" => "memcache".to_string(),
        _ => name.replace('-', "_"),
    }
}

/// Inserts the `required` filters missing from `pipe`, as Swift's
/// `modify_wsgi_pipeline` does (last required filter first, each after
/// the last of its predecessors present).
pub fn add_required(pipe: &mut Vec<String>, required: &[&Required]) {
    for r in required.iter().rev() {
        if pipe.iter().any(|n| n == r.name) {
            continue;
        }
        let at = (r.after)(pipe)
            .iter()
            .filter_map(|after| pipe.iter().position(|n| n == after).map(|i| i + 1))
            .max()
            .unwrap_or(0);
        pipe.insert(at, r.name.to_string());
    }
}

/// Why a configured pipeline cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineError {
    /// A name that is neither one of apus's filters nor one of Swift's
    /// that apus does elsewhere.
    Unavailable {
        name: String,
        available: Vec<&'static str>,
    },
    /// The proxy application named anywhere but at the end.
    AppNotLast,
    /// A filter named twice.
    Duplicate(String),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Unavailable { name, available } => write!(
                f,
                "pipeline: apus has no filter {name:?} (available: {})",
                available.join(", ")
            ),
            PipelineError::AppNotLast => {
                write!(f, "pipeline: proxy-server can only be the last name")
            }
            PipelineError::Duplicate(name) => {
                write!(f, "pipeline: filter {name:?} is named twice")
            }
        }
    }
}

impl std::error::Error for PipelineError {}

fn entry(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name)
}

/// The filters in front of the proxy application, first to last, checked
/// and completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    names: Vec<String>,
}

impl Default for Pipeline {
    /// apus's default pipeline, less what apus does not provide yet.
    fn default() -> Self {
        let names: Vec<String> = APUS_DEFAULT_PIPELINE
            .split_whitespace()
            .map(canonical_name)
            .filter(|n| entry(n).is_some())
            .collect();
        Pipeline::complete(names)
    }
}

impl Pipeline {
    /// apus's default with Keystone in tempauth's place (`authtoken
    /// keystoneauth`), as Swift's Keystone deployments configure it.
    pub fn keystone_default() -> Self {
        let names: Vec<String> = APUS_DEFAULT_PIPELINE
            .split_whitespace()
            .map(canonical_name)
            .filter(|n| entry(n).is_some())
            .flat_map(|n| {
                if n == "tempauth" {
                    vec!["authtoken".to_string(), "keystoneauth".to_string()]
                } else {
                    vec![n]
                }
            })
            .collect();
        Pipeline::complete(names)
    }

    /// A pipeline from configuration: Swift's names, optionally ending
    /// with `proxy-server`.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, PipelineError> {
        let mut pipe: Vec<String> = names.iter().map(|n| canonical_name(n.as_ref())).collect();
        if pipe.last().map(String::as_str) == Some("proxy_server") {
            pipe.pop();
        }
        let mut seen: Vec<&str> = Vec::new();
        for name in &pipe {
            match entry(name) {
                None if name == "proxy_server" => return Err(PipelineError::AppNotLast),
                None => {
                    return Err(PipelineError::Unavailable {
                        name: name.clone(),
                        available: ENTRIES.iter().map(|e| e.name).collect(),
                    })
                }
                Some(Entry {
                    stage: Stage::Filter { .. },
                    ..
                }) if seen.contains(&name.as_str()) => {
                    return Err(PipelineError::Duplicate(name.clone()))
                }
                Some(_) => seen.push(name),
            }
        }
        Ok(Pipeline::complete(pipe))
    }

    /// The internal client's pipeline (Swift's `internal-client.conf`):
    /// errors caught, nothing else.
    pub fn internal() -> Self {
        Pipeline {
            names: vec!["catch_errors".to_string()],
        }
    }

    /// The internal client's pipeline with `extra` stages after
    /// `catch_errors` (the image service keeps its data as SLOs, so it
    /// adds `slo`).
    pub fn internal_with(extra: &[&str]) -> Result<Self, PipelineError> {
        let mut names = vec!["catch_errors".to_string()];
        for name in extra {
            let name = canonical_name(name);
            if entry(&name).is_none() {
                return Err(PipelineError::Unavailable {
                    name,
                    available: ENTRIES.iter().map(|e| e.name).collect(),
                });
            }
            names.push(name);
        }
        Ok(Pipeline { names })
    }

    /// Adds the required filters apus has.
    fn complete(mut names: Vec<String>) -> Self {
        let required: Vec<&Required> = SWIFT_REQUIRED
            .iter()
            .filter(|r| entry(r.name).is_some())
            .collect();
        add_required(&mut names, &required);
        Pipeline { names }
    }

    /// The names, first to last, as configured and completed.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The names of the stages that run, first to last.
    pub fn stages(&self) -> Vec<&str> {
        self.names
            .iter()
            .filter(|n| {
                matches!(
                    entry(n),
                    Some(Entry {
                        stage: Stage::Filter { .. },
                        ..
                    })
                )
            })
            .map(String::as_str)
            .collect()
    }

    /// Builds the stages over `app`, the last first.
    pub fn build(&self, ctx: &FilterContext, app: SharedService) -> SharedService {
        let mut next = app;
        for name in self.names.iter().rev() {
            if let Some(Entry {
                stage: Stage::Filter { build, .. },
                ..
            }) = entry(name)
            {
                next = build(ctx, next);
            }
        }
        next
    }

    /// The `/info` entries of the filters that run.
    pub fn info(&self, config: &ProxyConfig) -> Vec<(&'static str, serde_json::Value)> {
        self.names
            .iter()
            .filter_map(|name| match entry(name) {
                Some(Entry {
                    stage:
                        Stage::Filter {
                            info: Some(info), ..
                        },
                    ..
                }) => Some(info(config)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Where the jobs of Swift filters named but not built are done.
    pub fn elsewhere(&self) -> Vec<(&str, &'static str)> {
        self.names
            .iter()
            .filter_map(|name| match entry(name) {
                Some(Entry {
                    stage: Stage::Elsewhere(why),
                    ..
                }) => Some((name.as_str(), *why)),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} proxy_server", self.names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swift_modify(pipe: &str) -> String {
        let mut names: Vec<String> = pipe.split_whitespace().map(canonical_name).collect();
        let all: Vec<&Required> = SWIFT_REQUIRED.iter().collect();
        add_required(&mut names, &all);
        names.join(" ")
    }

    /// Swift's own expectations (test_wsgi.py,
    /// `test_proxy_modify_wsgi_pipeline*`): the same input pipelines come
    /// out the same.
    #[test]
    fn required_filters_go_where_swift_puts_them() {
        let cases = [
            (
                "healthcheck",
                "catch_errors gatekeeper listing_formats copy dlo versioned_writes healthcheck",
            ),
            (
                "catch_errors healthcheck cache ratelimit tempauth",
                "catch_errors gatekeeper healthcheck memcache listing_formats ratelimit tempauth copy dlo versioned_writes",
            ),
            (
                "catch_errors healthcheck cache ratelimit tempauth proxy-logging",
                "catch_errors gatekeeper healthcheck memcache ratelimit tempauth proxy_logging listing_formats copy dlo versioned_writes",
            ),
            (
                "catch_errors healthcheck proxy-logging cache slo ratelimit tempauth container-quotas account-quotas proxy-logging",
                "catch_errors gatekeeper healthcheck proxy_logging memcache listing_formats slo ratelimit tempauth copy dlo versioned_writes container_quotas account_quotas proxy_logging",
            ),
            (
                "catch_errors gatekeeper healthcheck proxy-logging cache container_sync bulk tempurl ratelimit tempauth container-quotas account-quotas slo dlo proxy-logging",
                "catch_errors gatekeeper healthcheck proxy_logging memcache listing_formats container_sync bulk tempurl ratelimit tempauth copy container_quotas account_quotas slo dlo versioned_writes proxy_logging",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(swift_modify(given), expected, "for {given:?}");
        }
        // Swift's default pipeline is already complete.
        assert_eq!(
            swift_modify(SWIFT_DEFAULT_PIPELINE),
            SWIFT_DEFAULT_PIPELINE
                .split_whitespace()
                .map(canonical_name)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    #[test]
    fn the_default_is_swifts_with_staticweb_and_domain_remap() {
        let p = Pipeline::default();
        assert_eq!(
            p.names().join(" "),
            "catch_errors gatekeeper healthcheck proxy_logging memcache domain_remap etag_quoter listing_formats bulk tempurl formpost ratelimit s3api tempauth console staticweb copy container_quotas account_quotas slo dlo versioned_writes symlink proxy_logging"
        );
        assert_eq!(
            p.stages(),
            [
                "catch_errors",
                "gatekeeper",
                "healthcheck",
                "domain_remap",
                "etag_quoter",
                "listing_formats",
                "bulk",
                "tempurl",
                "formpost",
                "ratelimit",
                "s3api",
                "tempauth",
                "console",
                "staticweb",
                "copy",
                "container_quotas",
                "account_quotas",
                "slo",
                "dlo",
                "versioned_writes",
                "symlink"
            ]
        );
    }

    #[test]
    fn keystone_is_named_as_in_swift() {
        let p = Pipeline::from_names(&[
            "catch_errors",
            "tempurl",
            "authtoken",
            "keystoneauth",
            "proxy-server",
        ])
        .unwrap();
        // Swift puts the required filters after keystoneauth.
        assert_eq!(
            p.stages(),
            [
                "catch_errors",
                "gatekeeper",
                "listing_formats",
                "tempurl",
                "authtoken",
                "keystoneauth",
                "copy",
                "dlo",
                "versioned_writes"
            ]
        );
        assert!(!Pipeline::default().stages().contains(&"keystoneauth"));
    }

    #[test]
    fn keystones_default_puts_it_where_tempauth_was() {
        let stages = Pipeline::keystone_default().stages().join(" ");
        assert!(
            stages.contains("s3api authtoken keystoneauth console staticweb copy"),
            "{stages}"
        );
        assert!(!stages.contains("tempauth"), "{stages}");
    }

    #[test]
    fn configured_pipelines_are_completed_and_checked() {
        let p = Pipeline::from_names(&["healthcheck", "tempauth", "proxy-server"]).unwrap();
        assert_eq!(
            p.stages(),
            [
                "catch_errors",
                "gatekeeper",
                "listing_formats",
                "healthcheck",
                "tempauth",
                "copy",
                "dlo",
                "versioned_writes"
            ]
        );
        let p =
            Pipeline::from_names(&["catch_errors", "proxy-logging", "cache", "tempauth"]).unwrap();
        assert_eq!(
            p.names().join(" "),
            "catch_errors gatekeeper proxy_logging memcache listing_formats tempauth copy dlo versioned_writes"
        );
        assert!(matches!(
            Pipeline::from_names(&["catch_errors", "bogus"]),
            Err(PipelineError::Unavailable { name, .. }) if name == "bogus"
        ));
        assert_eq!(
            Pipeline::from_names(&["proxy-server", "tempauth"]),
            Err(PipelineError::AppNotLast)
        );
        assert_eq!(
            Pipeline::from_names(&["tempauth", "tempauth"]),
            Err(PipelineError::Duplicate("tempauth".into()))
        );
        // Swift's own default names two proxy-logging instances.
        assert!(Pipeline::from_names(&["proxy-logging", "tempauth", "proxy-logging"]).is_ok());
    }
}
