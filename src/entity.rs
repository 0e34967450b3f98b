//! What a record is written into: the columns of one entity as the
//! organization describes them. Plain data shared by the two sides that must
//! not know each other: the Dataverse client fills it in from the metadata
//! API, the mapping measures itself against it.

use std::collections::BTreeMap;

use serde::Serialize;

/// The columns of one entity, by logical name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityMetadata {
    pub logical_name: String,
    pub attributes: BTreeMap<String, Attribute>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// `AttributeType` as Dataverse names it: `String`, `Memo`, `Picklist`, `Lookup` …
    pub attribute_type: String,
    /// `false` for computed or system columns such as `fullname`.
    pub valid_for_create: bool,
    /// For `String` and `Memo` columns.
    pub max_length: Option<usize>,
    /// For `String` columns, `FormatName`: `Text`, `Email`, `Phone`, `Url`,
    /// `TextArea`, `RichText`, `Json` …
    pub format: Option<String>,
    /// For `Picklist` columns.
    pub options: Option<Vec<OptionValue>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionValue {
    pub value: i64,
    pub label: String,
}

impl Attribute {
    pub fn is_text(&self) -> bool {
        matches!(self.attribute_type.as_str(), "String" | "Memo")
    }

    /// Text that takes line breaks: Memo columns, and String columns
    /// formatted as a text area, rich text or JSON.
    pub fn is_multi_line(&self) -> bool {
        self.attribute_type == "Memo"
            || matches!(
                self.format.as_deref(),
                Some("TextArea" | "RichText" | "Json")
            )
    }

    pub fn is_email(&self) -> bool {
        self.format.as_deref() == Some("Email")
    }

    pub fn is_picklist(&self) -> bool {
        self.attribute_type == "Picklist"
    }

    /// Columns an `@odata.bind` can set.
    pub fn is_lookup(&self) -> bool {
        matches!(
            self.attribute_type.as_str(),
            "Lookup" | "Owner" | "Customer"
        )
    }
}

impl EntityMetadata {
    pub fn attribute(&self, column: &str) -> Option<&Attribute> {
        self.attributes.get(column)
    }

    /// MaxLength of a text column.
    pub fn max_length(&self, column: &str) -> Option<usize> {
        self.attributes.get(column).and_then(|a| a.max_length)
    }
}
