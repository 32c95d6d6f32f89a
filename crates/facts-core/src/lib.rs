//! Schema extraction: turning a page into records that answer a project's extraction
//! schema, every value with the verbatim quote it came from.
//!
//! Pure and synchronous (no I/O, no async, no database): the `facts` worker calls it.
//!
//! - [`schema`]: the schema format ([`Schema::parse`] validates YAML or JSON and reports
//!   every error with its path; [`Schema::to_json`] is the stored form). The crate README
//!   is the format reference.
//! - [`templates`]: ready-made schemas shipped with the crate (article, company, product,
//!   job posting, event).
//! - [`record`]: what filling gives ([`Record`], [`FactValue`], [`Origin`], [`Filled`]) and
//!   [`consolidate`], which merges records of one entity and key, keeping conflicts.
//! - [`markup`]: the markup backend, reading JSON-LD, microdata, RDFa Lite, OpenGraph and
//!   meta tags, and the schema's selector and pattern rules.
//! - [`answer`]: the model backend's pure side: the JSON Schema of the answer, the
//!   instructions, and the checking and grounding of an answer.
//! - [`ground`]: whether a quote occurs in the page ([`PageText`]).
//! - [`coerce`]: found strings to typed values.

#![warn(missing_docs)]

pub mod answer;
pub mod coerce;
pub mod ground;
pub mod markup;
pub mod record;
pub mod schema;
pub mod templates;

pub use answer::{Violation, Violations, answer_schema, instructions, parse_answer};
pub use ground::PageText;
pub use markup::fill;
pub use record::{Dropped, FactValue, Filled, Origin, Record, consolidate, consolidate_for};
pub use schema::{Backend, EntityList, Field, FieldType, Rule, Schema, SchemaError, SchemaErrors};
pub use templates::{Template, template, templates};
