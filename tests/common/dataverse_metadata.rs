//! The Dataverse fake's lead metadata (`EntityDefinitions(LogicalName='lead')`)
//! and WhoAmI, shaped like Dataverse's answers. Apart from the record
//! creation in [`super::dataverse`], which `benches/drain.rs` includes on
//! its own.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::dataverse::{BUSINESS_UNIT_ID, ENTITY_PATH, ORGANIZATION_ID, USER_ID, WHOAMI_PATH};

/// `(logical name, AttributeType, IsValidForCreate, MaxLength)` of the lead
/// columns the fake knows, as a default organization has them.
pub const LEAD_COLUMNS: &[(&str, &str, bool, Option<u32>)] = &[
    ("leadid", "Uniqueidentifier", true, None),
    ("subject", "String", true, Some(300)),
    ("firstname", "String", true, Some(50)),
    ("lastname", "String", true, Some(50)),
    ("fullname", "String", false, Some(160)),
    ("emailaddress1", "String", true, Some(100)),
    ("telephone1", "String", true, Some(50)),
    ("mobilephone", "String", true, Some(20)),
    ("companyname", "String", true, Some(100)),
    ("jobtitle", "String", true, Some(100)),
    ("address1_country", "String", true, Some(80)),
    ("websiteurl", "String", true, Some(200)),
    ("description", "Memo", true, Some(2000)),
    ("leadsourcecode", "Picklist", true, None),
    ("ownerid", "Owner", true, None),
    ("parentaccountid", "Lookup", true, None),
    ("statecode", "State", true, None),
    ("statuscode", "Status", true, None),
    ("donotemail", "Boolean", true, None),
    ("createdon", "DateTime", false, None),
];

const LEAD_SOURCE_OPTIONS: [(i64, &str); 10] = [
    (1, "Advertisement"),
    (2, "Employee Referral"),
    (3, "External Referral"),
    (4, "Partner"),
    (5, "Public Relations"),
    (6, "Seminar"),
    (7, "Trade Show"),
    (8, "Web"),
    (9, "Word of Mouth"),
    (10, "Other"),
];

fn metadata_id(i: usize) -> String {
    format!(
        "{:08x}-c699-e311-9752-6c3be5a87df0",
        0x7919_4881u32 + i as u32
    )
}

fn odata_type(attribute_type: &str) -> String {
    let t = match attribute_type {
        "Owner" | "Lookup" | "Customer" => "Lookup",
        other => other,
    };
    format!("#Microsoft.Dynamics.CRM.{t}AttributeMetadata")
}

/// The answers of `EntityDefinitions(LogicalName='lead')/Attributes…`, shaped
/// like Dataverse's (`@odata.context`, `@odata.type`, `MetadataId`), with
/// `subject` limited to `subject_max` characters.
pub fn lead_metadata(base: &str, subject_max: u32) -> [(String, Value); 4] {
    let context = |sel: &str| {
        format!("{base}/api/data/v9.2/$metadata#EntityDefinitions('lead')/Attributes{sel}")
    };
    let all: Vec<Value> = LEAD_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, ty, create, _))| {
            json!({
                "@odata.type": odata_type(ty),
                "LogicalName": name,
                "AttributeType": ty,
                "IsValidForCreate": create,
                "MetadataId": metadata_id(i),
            })
        })
        .collect();
    let with_max = |kind: &str| -> Vec<Value> {
        LEAD_COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, (_, ty, _, _))| *ty == kind)
            .map(|(i, (name, _, _, max))| {
                let max = if *name == "subject" {
                    Some(subject_max)
                } else {
                    *max
                };
                json!({"LogicalName": name, "MaxLength": max, "MetadataId": metadata_id(i)})
            })
            .collect()
    };
    let options: Vec<Value> = LEAD_SOURCE_OPTIONS
        .iter()
        .map(|(v, label)| {
            json!({
                "Value": v,
                "Color": null,
                "IsManaged": true,
                "Label": {
                    "LocalizedLabels": [{"Label": label, "LanguageCode": 1033, "IsManaged": true}],
                    "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033, "IsManaged": true},
                },
            })
        })
        .collect();
    [
        (
            ENTITY_PATH.to_owned(),
            json!({"@odata.context": context("(LogicalName,AttributeType,IsValidForCreate)"), "value": all}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.StringAttributeMetadata"),
            json!({"@odata.context": context("/Microsoft.Dynamics.CRM.StringAttributeMetadata(LogicalName,MaxLength)"), "value": with_max("String")}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.MemoAttributeMetadata"),
            json!({"@odata.context": context("/Microsoft.Dynamics.CRM.MemoAttributeMetadata(LogicalName,MaxLength)"), "value": with_max("Memo")}),
        ),
        (
            format!("{ENTITY_PATH}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"),
            json!({
                "@odata.context": context("/Microsoft.Dynamics.CRM.PicklistAttributeMetadata(LogicalName,OptionSet())"),
                "value": [{
                    "LogicalName": "leadsourcecode",
                    "MetadataId": metadata_id(13),
                    "OptionSet@odata.context": context("(13)/OptionSet"),
                    "OptionSet": {"MetadataId": "3b9c4f6e-0000-4000-8000-000000000013", "Options": options},
                }],
            }),
        ),
    ]
}

pub async fn mount_metadata(server: &MockServer, subject_max: u32) {
    for (p, body) in lead_metadata(&server.uri(), subject_max) {
        Mock::given(method("GET"))
            .and(path(p.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("OData-Version", "4.0")
                    .set_body_json(body),
            )
            .mount(server)
            .await;
    }
}

pub async fn mount_whoami(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(WHOAMI_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("OData-Version", "4.0")
                .insert_header("x-ms-dop-hint", "4")
                .set_body_json(json!({
                    "@odata.context": format!("{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", server.uri()),
                    "BusinessUnitId": BUSINESS_UNIT_ID,
                    "UserId": USER_ID,
                    "OrganizationId": ORGANIZATION_ID,
                })),
        )
        .mount(server)
        .await;
}
