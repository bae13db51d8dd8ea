//! The simulated model catalogue (`config/queryModels`): which model keys exist,
//! which are reasoning / vision models, and in which scenes each is offered.

use serde_json::{Value, json};

pub struct Model {
    pub key: &'static str,
    pub display_name: &'static str,
    pub is_reasoning: bool,
    pub is_vl: bool,
}

/// The model an ask without `extra.modelConfig.key` (or with an empty key) runs on.
pub const DEFAULT_MODEL: &str = "auto";

pub const MODELS: &[Model] = &[
    Model {
        key: "auto",
        display_name: "Auto",
        is_reasoning: false,
        is_vl: false,
    },
    Model {
        key: "dashscope_qwen3_coder",
        display_name: "Qwen3-Coder",
        is_reasoning: false,
        is_vl: false,
    },
    Model {
        key: "dashscope_qwen_max_latest",
        display_name: "Qwen-Max",
        is_reasoning: false,
        is_vl: false,
    },
    Model {
        key: "dashscope_qwen_plus_20250428_thinking",
        display_name: "Qwen-Plus-Thinking",
        is_reasoning: true,
        is_vl: false,
    },
    Model {
        key: "dashscope_qmodel",
        display_name: "Qwen-VL",
        is_reasoning: false,
        is_vl: true,
    },
];

/// Scene -> (model keys offered, default key). Deliberately not every model in every scene: the
/// real catalogue varies per scene and tenant, and clients must cope.
const SCENES: &[(&str, &[&str], &str)] = &[
    (
        "chat",
        &[
            "auto",
            "dashscope_qwen3_coder",
            "dashscope_qwen_max_latest",
            "dashscope_qwen_plus_20250428_thinking",
            "dashscope_qmodel",
        ],
        "auto",
    ),
    (
        "assistant",
        &[
            "auto",
            "dashscope_qwen3_coder",
            "dashscope_qwen_plus_20250428_thinking",
            "dashscope_qmodel",
        ],
        "auto",
    ),
    (
        "developer",
        &["auto", "dashscope_qwen3_coder", "dashscope_qwen_max_latest"],
        "auto",
    ),
    (
        "inline",
        &["dashscope_qwen3_coder"],
        "dashscope_qwen3_coder",
    ),
    ("quest", &["auto", "dashscope_qwen3_coder"], "auto"),
];

pub fn find(key: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.key == key)
}

/// The `config/queryModels` result for a logged-in account.
pub fn catalogue() -> Value {
    let mut out = serde_json::Map::new();
    for (scene, keys, default) in SCENES {
        let items: Vec<Value> = keys
            .iter()
            .filter_map(|k| find(k))
            .map(|m| {
                json!({
                    "key": m.key,
                    "displayName": m.display_name,
                    "format": "openai",
                    "source": "system",
                    "isReasoning": m.is_reasoning,
                    "isVl": m.is_vl,
                    "isDefault": m.key == *default,
                    "url": "",
                    "apiKey": "",
                    "model": "",
                })
            })
            .collect();
        out.insert((*scene).to_string(), Value::Array(items));
    }
    Value::Object(out)
}

/// `model/queryClasses` (known only from emulators, not from the real binary).
pub fn classes() -> Value {
    json!({
        "classes": MODELS
            .iter()
            .map(|m| json!({"key": m.key, "displayName": m.display_name}))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scene_has_exactly_one_default_and_known_keys() {
        let c = catalogue();
        for (scene, items) in c.as_object().unwrap() {
            let items = items.as_array().unwrap();
            assert!(!items.is_empty(), "{scene}");
            let defaults = items.iter().filter(|i| i["isDefault"] == true).count();
            assert_eq!(defaults, 1, "{scene}");
        }
        assert!(
            find("dashscope_qwen_plus_20250428_thinking")
                .unwrap()
                .is_reasoning
        );
        assert!(find("nope").is_none());
    }
}
