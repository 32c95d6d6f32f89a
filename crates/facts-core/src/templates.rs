//! Schemas shipped with the crate, as their YAML text (so users can copy and edit them).

/// A ready-made schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The template's name (also its schema's name).
    pub name: &'static str,
    /// What it extracts.
    pub description: &'static str,
    /// The schema, as YAML.
    pub text: &'static str,
}

static TEMPLATES: [Template; 5] = [
    Template {
        name: "article",
        description: "News articles and blog posts: headline, authors, dates, publisher, language",
        text: include_str!("../templates/article.yaml"),
    },
    Template {
        name: "company",
        description: "A company: name, contact, address, with lists of people, products and certifications",
        text: include_str!("../templates/company.yaml"),
    },
    Template {
        name: "product",
        description: "A product: name, brand, identifiers, rating, with its offers (price, currency, availability)",
        text: include_str!("../templates/product.yaml"),
    },
    Template {
        name: "job_posting",
        description: "A job advertisement: title, employer, place, dates, employment type, salary",
        text: include_str!("../templates/job_posting.yaml"),
    },
    Template {
        name: "event",
        description: "An event: name, dates, venue, organiser, performers, with its ticket offers",
        text: include_str!("../templates/event.yaml"),
    },
];

/// Every shipped template.
pub fn templates() -> &'static [Template] {
    &TEMPLATES
}

/// The template of that name.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

impl Template {
    /// The template's schema.
    ///
    /// # Panics
    /// Never for the shipped templates: a unit test parses each of them.
    pub fn schema(&self) -> crate::Schema {
        crate::Schema::parse(self.text).expect("shipped templates are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_round_trips_and_is_named_like_its_schema() {
        for t in templates() {
            let schema = match crate::Schema::parse(t.text) {
                Ok(s) => s,
                Err(e) => panic!("template {}:\n{e}", t.name),
            };
            assert_eq!(schema.name, t.name);
            let json = schema.to_json().to_string();
            assert_eq!(crate::Schema::parse(&json).unwrap(), schema, "{}", t.name);
            assert!(template(t.name).is_some());
        }
        assert!(template("nope").is_none());
    }
}
