//! What Dataverse says about itself: `WhoAmI` (are the credentials and the
//! application user right) and an entity's column metadata (which columns
//! exist, their MaxLength, option-set values). `check --live` reports from
//! it; the delivery worker keeps a per-organization copy to cut values to the
//! real MaxLength.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{
    DataverseClient, DataverseError, ErrorKind, READ_HEADERS, classify, collection_base, describe,
    dop_hint, network,
};
use crate::auth::AccessToken;
use crate::entity::{Attribute, EntityMetadata, OptionValue};

/// The stock entity set whose logical name needs no lookup.
const LEADS_ENTITY_SET: (&str, &str) = ("leads", "lead");

/// `GET WhoAmI`: who leadbridge is in this organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhoAmI {
    pub user_id: String,
    pub business_unit_id: String,
    pub organization_id: String,
    /// `x-ms-dop-hint`: the degree of parallelism Dataverse recommends.
    pub dop_hint: Option<usize>,
}

/// Builds the metadata from the four `Attributes` answers (all columns,
/// then the String, Memo and Picklist casts). Pure, for tests.
pub fn parse_entity_metadata(
    logical_name: &str,
    all: &Value,
    strings: &Value,
    memos: &Value,
    picklists: &Value,
) -> Result<EntityMetadata, String> {
    let mut attributes = BTreeMap::new();
    for item in values(all)? {
        let Some(name) = item.get("LogicalName").and_then(Value::as_str) else {
            continue;
        };
        attributes.insert(
            name.to_owned(),
            Attribute {
                attribute_type: item
                    .get("AttributeType")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown")
                    .to_owned(),
                valid_for_create: item
                    .get("IsValidForCreate")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                max_length: None,
                format: None,
                options: None,
            },
        );
    }
    for item in values(strings)?.iter().chain(values(memos)?) {
        let name = item.get("LogicalName").and_then(Value::as_str);
        let max = item
            .get("MaxLength")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        let format = item
            .pointer("/FormatName/Value")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(a) = name.and_then(|n| attributes.get_mut(n)) {
            a.max_length = a.max_length.or(max);
            a.format = a.format.take().or(format);
        }
    }
    for item in values(picklists)? {
        let Some(name) = item.get("LogicalName").and_then(Value::as_str) else {
            continue;
        };
        let options = item
            .pointer("/OptionSet/Options")
            .and_then(Value::as_array)
            .map(|opts| {
                opts.iter()
                    .filter_map(|o| {
                        Some(OptionValue {
                            value: o.get("Value")?.as_i64()?,
                            label: o
                                .pointer("/Label/UserLocalizedLabel/Label")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(a) = attributes.get_mut(name) {
            a.options = Some(options);
        }
    }
    if attributes.is_empty() {
        return Err(format!(
            "Dataverse listed no columns for entity {logical_name}"
        ));
    }
    Ok(EntityMetadata {
        logical_name: logical_name.to_owned(),
        attributes,
    })
}

fn values(v: &Value) -> Result<&Vec<Value>, String> {
    v.get("value")
        .and_then(Value::as_array)
        .ok_or_else(|| "unexpected metadata answer: no `value` list".to_owned())
}

/// Picklist casts need `$expand=OptionSet` for their values.
const ATTRIBUTE_QUERIES: [&str; 4] = [
    "Attributes?$select=LogicalName,AttributeType,IsValidForCreate",
    "Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength,FormatName",
    "Attributes/Microsoft.Dynamics.CRM.MemoAttributeMetadata?$select=LogicalName,MaxLength",
    "Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
];

impl DataverseClient {
    /// `GET WhoAmI`: the cheapest proof that token, application user and
    /// organization URL fit together.
    pub async fn who_am_i(
        &self,
        org_url: &Url,
        token: &AccessToken,
    ) -> Result<WhoAmI, DataverseError> {
        let (headers, body) = self
            .get_json(format!("{}/WhoAmI", collection_base(org_url)), token)
            .await?;
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(WhoAmI {
            user_id: text("UserId"),
            business_unit_id: text("BusinessUnitId"),
            organization_id: text("OrganizationId"),
            dop_hint: dop_hint(&headers),
        })
    }

    /// The columns of the entity behind `entity_set`.
    pub async fn entity_metadata(
        &self,
        org_url: &Url,
        entity_set: &str,
        token: &AccessToken,
    ) -> Result<EntityMetadata, DataverseError> {
        let base = collection_base(org_url);
        let logical_name = self.logical_name(&base, entity_set, token).await?;
        let definition = format!("{base}/EntityDefinitions(LogicalName='{logical_name}')");
        // One after the other: a daily fetch need not be fast, and a failing
        // organization gets one request, not four.
        let [all, strings, memos, picklists] = ATTRIBUTE_QUERIES;
        let get = |q: &str| self.get_json(format!("{definition}/{q}"), token);
        let all = get(all).await?.1;
        let strings = get(strings).await?.1;
        let memos = get(memos).await?.1;
        let picklists = get(picklists).await?.1;
        parse_entity_metadata(&logical_name, &all, &strings, &memos, &picklists).map_err(
            |message| {
                DataverseError::new(
                    ErrorKind::Transient { retry_after: None },
                    describe(None, None, &message),
                )
            },
        )
    }

    /// Entity sets are plural (`leads`), metadata is keyed by the logical
    /// name (`lead`): ask Dataverse, except for the default entity set.
    async fn logical_name(
        &self,
        base: &str,
        entity_set: &str,
        token: &AccessToken,
    ) -> Result<String, DataverseError> {
        if entity_set == LEADS_ENTITY_SET.0 {
            return Ok(LEADS_ENTITY_SET.1.to_owned());
        }
        let (_, body) = self
            .get_json(
                format!(
                    "{base}/EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq '{entity_set}'"
                ),
                token,
            )
            .await?;
        body.pointer("/value/0/LogicalName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                DataverseError::new(
                    ErrorKind::Permanent,
                    describe(
                        None,
                        None,
                        &format!("no entity has the entity set name `{entity_set}`"),
                    ),
                )
            })
    }

    async fn get_json(
        &self,
        url: String,
        token: &AccessToken,
    ) -> Result<(HeaderMap, Value), DataverseError> {
        let mut builder = self.http.get(url).bearer_auth(token.bearer());
        for (k, v) in READ_HEADERS {
            builder = builder.header(k, v);
        }
        let response = builder.send().await.map_err(|e| network(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(classify(status, &headers, &body));
        }
        let value = serde_json::from_slice(&body).map_err(|e| {
            DataverseError::new(
                ErrorKind::Transient { retry_after: None },
                describe(
                    Some(status.as_u16()),
                    None,
                    &format!("unreadable answer: {e}"),
                ),
            )
            .with_status(status.as_u16())
        })?;
        Ok((headers, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> EntityMetadata {
        parse_entity_metadata(
            "lead",
            &json!({"value": [
                {"LogicalName": "subject", "AttributeType": "String", "IsValidForCreate": true},
                {"LogicalName": "description", "AttributeType": "Memo", "IsValidForCreate": true},
                {"LogicalName": "fullname", "AttributeType": "String", "IsValidForCreate": false},
                {"LogicalName": "leadsourcecode", "AttributeType": "Picklist", "IsValidForCreate": true},
                {"LogicalName": "ownerid", "AttributeType": "Owner", "IsValidForCreate": true},
            ]}),
            &json!({"value": [
                {"LogicalName": "subject", "MaxLength": 300},
                {"LogicalName": "fullname", "MaxLength": 160},
            ]}),
            &json!({"value": [{"LogicalName": "description", "MaxLength": 2000}]}),
            &json!({"value": [{"LogicalName": "leadsourcecode", "OptionSet": {"Options": [
                {"Value": 8, "Label": {"UserLocalizedLabel": {"Label": "Web"}}},
                {"Value": 10, "Label": {"UserLocalizedLabel": {"Label": "Other"}}},
            ]}}]}),
        )
        .unwrap()
    }

    #[test]
    fn combines_the_four_answers() {
        let m = sample();
        assert_eq!(m.max_length("subject"), Some(300));
        assert_eq!(m.max_length("description"), Some(2000));
        assert_eq!(m.max_length("leadsourcecode"), None);
        assert!(!m.attribute("fullname").unwrap().valid_for_create);
        assert!(m.attribute("ownerid").unwrap().is_lookup());
        let opts = m
            .attribute("leadsourcecode")
            .unwrap()
            .options
            .clone()
            .unwrap();
        assert_eq!(
            opts,
            vec![
                OptionValue {
                    value: 8,
                    label: "Web".into()
                },
                OptionValue {
                    value: 10,
                    label: "Other".into()
                }
            ]
        );
        assert!(
            parse_entity_metadata("lead", &json!({}), &json!({}), &json!({}), &json!({})).is_err()
        );
    }
}
