//! Survey texts with placeholders, parsed once when the config loads so that a typo
//! (`{agnet}`) stops startup instead of reaching a caller. `{{` and `}}` are literal braces.

/// What a template may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `{company}`: the company name of survey.toml.
    Company,
    /// `{agent}`: the agent's extension or display id (never a full name).
    Agent,
    /// `{queue}`: the label of the queue the call was answered from.
    Queue,
}

impl Placeholder {
    pub const ALL: [Placeholder; 3] =
        [Placeholder::Company, Placeholder::Agent, Placeholder::Queue];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Company => "company",
            Placeholder::Agent => "agent",
            Placeholder::Queue => "queue",
        }
    }

    fn parse(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Placeholder),
}

/// A parsed text template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values placeholders are replaced with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'a> {
    pub company: &'a str,
    pub agent: &'a str,
    pub queue: &'a str,
}

/// Longest template in characters: a survey is one short text (a few SMS parts at most).
pub const MAX_TEMPLATE_CHARS: usize = 600;

impl Template {
    /// Parses `text`; the error is the reason for the config fault.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if text.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(format!("longer than {MAX_TEMPLATE_CHARS} characters"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!(
                                    "`{{{name}` is not closed (write `{{{{` for a literal brace)"
                                ))
                            }
                        }
                    }
                    let field = Placeholder::parse(&name).ok_or_else(|| {
                        format!(
                            "unknown placeholder `{{{name}}}`: use {}",
                            Placeholder::ALL
                                .iter()
                                .map(|p| format!("{{{}}}", p.name()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err("a lone `}` (write `}}` for a literal brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Field(placeholder))
    }

    pub fn render(&self, fields: &Fields<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Placeholder::Company) => out.push_str(fields.company),
                Part::Field(Placeholder::Agent) => out.push_str(fields.agent),
                Part::Field(Placeholder::Queue) => out.push_str(fields.queue),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder_and_escapes() {
        let t = Template::parse("{company}: agent {agent} in {queue} {{ok}}").unwrap();
        let f = Fields {
            company: "Example Co",
            agent: "1002",
            queue: "Technical support",
        };
        assert_eq!(
            t.render(&f),
            "Example Co: agent 1002 in Technical support {ok}"
        );
        assert!(t.uses(Placeholder::Agent));
        let zh = Template::parse("感谢致电{company}，回复TD退订。").unwrap();
        assert_eq!(zh.render(&f), "感谢致电Example Co，回复TD退订。");
        assert!(!zh.uses(Placeholder::Agent));
    }

    #[test]
    fn faults() {
        let e = Template::parse("Hi {name}").unwrap_err();
        assert!(e.contains("unknown placeholder `{name}`"), "{e}");
        assert!(e.contains("{company}, {agent}, {queue}"), "{e}");
        assert!(Template::parse("Hi {agent")
            .unwrap_err()
            .contains("not closed"));
        assert!(Template::parse("Hi }").unwrap_err().contains("lone"));
        assert!(Template::parse("  ").unwrap_err().contains("empty"));
        assert!(Template::parse(&"x".repeat(601))
            .unwrap_err()
            .contains("600"));
        assert!(Template::parse("{}").unwrap_err().contains("`{}`"));
    }
}
