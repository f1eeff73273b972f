//! A Kafka binding's address: `kafka://[user:password@]host:port[,host:port...][?mechanism=M]`.
//!
//! Credentials mean SASL authentication to every broker, with mechanism `PLAIN` unless
//! `?mechanism=` names `SCRAM-SHA-256` or `SCRAM-SHA-512`. User and password are percent-decoded
//! (a `@`, `:`, `/`, `?` or `%` in them is written `%40`, `%3A`, `%2F`, `%3F`, `%25`). Messages
//! never carry the password: they show the address through [`redact`].

use crate::data::{Address, redact};
use crate::header::percent_decode;

/// The port of a broker named without one.
pub const DEFAULT_PORT: u16 = 9092;

/// The SASL mechanisms lane speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// Kafka's name of the mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (case-insensitive).
    pub fn parse(name: &str) -> Result<Mechanism, String> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "SCRAM-SHA-256" => Ok(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(Mechanism::ScramSha512),
            "GSSAPI" | "OAUTHBEARER" => Err(format!(
                "SASL mechanism `{name}` is not supported by lane yet; use PLAIN, SCRAM-SHA-256 \
                 or SCRAM-SHA-512"
            )),
            _ => Err(format!(
                "`{}` is not a SASL mechanism lane knows; use PLAIN, SCRAM-SHA-256 or \
                 SCRAM-SHA-512",
                name.escape_default()
            )),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SASL credentials for the brokers. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// A parsed `kafka://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    /// `host:port` of each broker (the default port added where none is given).
    pub brokers: Vec<String>,
    /// `None`: the brokers take clients without authentication.
    pub sasl: Option<Sasl>,
}

impl KafkaUrl {
    /// Parses `url`; an error says what is wrong without the password.
    pub fn parse(url: &str) -> Result<KafkaUrl, String> {
        let shown = redact(url);
        let addr = Address::parse(url)?;
        if addr.scheme != "kafka" {
            return Err(format!("`{shown}` is not a kafka:// address"));
        }
        if !addr.path.is_empty() {
            return Err(format!(
                "`{shown}` has a path `/{}`; a kafka:// address names brokers only",
                addr.path
            ));
        }
        let mut brokers = Vec::new();
        for b in addr.authority.split(',') {
            let b = b.trim();
            if b.is_empty() {
                continue;
            }
            let ok = match b.rsplit_once(':') {
                Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
                None => true,
            };
            if !ok || b.contains(['/', '@', ' ']) {
                return Err(format!("`{b}` in `{shown}` is not a broker `host:port`"));
            }
            brokers.push(if b.contains(':') {
                b.to_owned()
            } else {
                format!("{b}:{DEFAULT_PORT}")
            });
        }
        if brokers.is_empty() {
            return Err(format!("`{shown}` names no broker"));
        }
        let mut mechanism = None;
        for pair in addr.query.as_deref().unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "mechanism" => {
                    if mechanism.is_some() {
                        return Err(format!("`{shown}` gives `mechanism` twice"));
                    }
                    let value = percent_decode(value).unwrap_or_else(|| value.to_owned());
                    mechanism =
                        Some(Mechanism::parse(&value).map_err(|e| format!("{shown}: {e}"))?);
                }
                other => {
                    return Err(format!(
                        "`{shown}`: unknown parameter `{}` (a kafka:// address takes \
                         `mechanism`)",
                        other.escape_default()
                    ));
                }
            }
        }
        let sasl = match &addr.userinfo {
            None => {
                if let Some(m) = mechanism {
                    return Err(format!(
                        "`{shown}` names SASL mechanism {m} but no user and password \
                         (`kafka://user:password@host:port?mechanism={m}`)"
                    ));
                }
                None
            }
            Some(info) => {
                let Some((user, password)) = info.split_once(':') else {
                    return Err(format!(
                        "`{shown}` names a user but no password (`kafka://user:password@host:port`)"
                    ));
                };
                let decode = |s: &str, what: &str| {
                    percent_decode(s).ok_or_else(|| {
                        format!(
                            "the {what} in `{shown}` has a broken percent-escape (write `%` as \
                             `%25`)"
                        )
                    })
                };
                let user = decode(user, "user")?;
                let password = decode(password, "password")?;
                if user.is_empty() {
                    return Err(format!("`{shown}` has an empty user name"));
                }
                if password.is_empty() {
                    return Err(format!("`{shown}` has an empty password"));
                }
                Some(Sasl {
                    mechanism: mechanism.unwrap_or(Mechanism::Plain),
                    user,
                    password,
                })
            }
        };
        Ok(KafkaUrl { brokers, sasl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_credentials() {
        let k = KafkaUrl::parse("kafka://b1:9093,b2").unwrap();
        assert_eq!(k.brokers, ["b1:9093", "b2:9092"]);
        assert_eq!(k.sasl, None);
        let k = KafkaUrl::parse("kafka://lane:s%40c%3Ar%2Ft@b1:9093").unwrap();
        assert_eq!(
            k.sasl,
            Some(Sasl {
                mechanism: Mechanism::Plain,
                user: "lane".into(),
                password: "s@c:r/t".into(),
            })
        );
        assert!(!format!("{k:?}").contains("s@c"), "{k:?}");
        for (q, m) in [
            ("PLAIN", Mechanism::Plain),
            ("SCRAM-SHA-256", Mechanism::ScramSha256),
            ("scram-sha-512", Mechanism::ScramSha512),
        ] {
            let k = KafkaUrl::parse(&format!("kafka://u:p@b?mechanism={q}")).unwrap();
            assert_eq!(k.sasl.unwrap().mechanism, m);
        }
    }

    #[test]
    fn bad_addresses_are_clear_and_never_show_the_password() {
        for (url, want) in [
            ("kafka://b1:x", "not a broker"),
            ("kafka://:9092", "not a broker"),
            ("redis://b1:9092", "not a kafka:// address"),
            (
                "kafka://u:hunter2@b?mechanism=MD5",
                "`MD5` is not a SASL mechanism",
            ),
            (
                "kafka://u:hunter2@b?mechanism=GSSAPI",
                "not supported by lane yet",
            ),
            ("kafka://u:hunter2@b?mech=PLAIN", "unknown parameter `mech`"),
            ("kafka://b?mechanism=PLAIN", "no user and password"),
            ("kafka://u@b", "no password"),
            ("kafka://:hunter2@b", "empty user"),
            ("kafka://u:hunter2%zz@b", "broken percent-escape"),
            ("kafka://u:hunter2@b/x", "names brokers only"),
            (
                "kafka://u:hunter2@b?mechanism=PLAIN&mechanism=PLAIN",
                "twice",
            ),
        ] {
            let e = KafkaUrl::parse(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }
}
