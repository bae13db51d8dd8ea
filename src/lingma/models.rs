//! The model registry (`config/queryModels`: models per scene, with display names and flags) and
//! model resolution.
//!
//! The registry is an object keyed by scene whose values are arrays of model items; the same key
//! may appear in several scenes. We keep one entry per key, remembering its scenes, and resolve what
//! a client asks for (key, display name, alias, `default`) to a key Lingma accepts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One model as Lingma lists it, merged across scenes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub key: String,
    pub display_name: String,
    pub scenes: Vec<String>,
    pub is_reasoning: bool,
    pub is_vl: bool,
    pub is_default: bool,
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRegistry {
    /// In the order Lingma listed them (first scene first).
    pub models: Vec<ModelInfo>,
}

/// The outcome of resolving a requested model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A model of the registry matched.
    Exact(String),
    /// Nothing matched (or `default`/empty was asked): this key is the configured default or the
    /// registry's own default.
    Default(String),
    /// The registry is empty and no default is configured: let Lingma choose.
    Unspecified,
}

impl Resolution {
    pub fn key(&self) -> Option<&str> {
        match self {
            Resolution::Exact(k) | Resolution::Default(k) => Some(k),
            Resolution::Unspecified => None,
        }
    }
}

/// Scenes in the order a chat client cares about them.
const SCENE_ORDER: [&str; 6] = [
    "chat",
    "assistant",
    "developer",
    "quest",
    "inline",
    "default",
];

impl ModelRegistry {
    /// Parses the `config/queryModels` result. Unknown shapes degrade to an empty registry entry
    /// rather than an error: the catalogue differs per account, tenant and version.
    pub fn from_query_result(result: &Value) -> Self {
        let mut registry = ModelRegistry::default();
        let Some(scenes) = result.as_object() else {
            return registry;
        };
        let mut names: Vec<&String> = scenes.keys().collect();
        names.sort_by_key(|s| {
            SCENE_ORDER
                .iter()
                .position(|o| o == s)
                .unwrap_or(SCENE_ORDER.len())
        });
        for scene in names {
            let Some(items) = scenes[scene].as_array() else {
                continue;
            };
            for item in items {
                let Some(key) = item
                    .get("key")
                    .and_then(Value::as_str)
                    .filter(|k| !k.is_empty())
                else {
                    continue;
                };
                let flag = |name: &str| item.get(name).and_then(Value::as_bool).unwrap_or(false);
                if let Some(existing) = registry.models.iter_mut().find(|m| m.key == key) {
                    if !existing.scenes.iter().any(|s| s == scene) {
                        existing.scenes.push(scene.clone());
                    }
                    existing.is_default |= flag("isDefault") && scene == "chat";
                    continue;
                }
                let display = item
                    .get("displayName")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .unwrap_or(key);
                registry.models.push(ModelInfo {
                    key: key.to_string(),
                    display_name: display.to_string(),
                    scenes: vec![scene.clone()],
                    is_reasoning: flag("isReasoning"),
                    is_vl: flag("isVl"),
                    is_default: flag("isDefault"),
                    source: item
                        .get("source")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
        registry
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.key == key)
    }

    /// The registry's own default for chat: the chat scene's default, else any default, else the
    /// first model.
    pub fn registry_default(&self) -> Option<&ModelInfo> {
        self.models
            .iter()
            .find(|m| m.is_default && m.scenes.iter().any(|s| s == "chat"))
            .or_else(|| self.models.iter().find(|m| m.is_default))
            .or_else(|| self.models.first())
    }

    /// Resolves what a client asked for. Order: exact key, display name, case-insensitive key or
    /// display name, normalised alias (`qwen3-coder` for `dashscope_qwen3_coder`), then the
    /// configured default (which is itself resolved), then the registry's default.
    pub fn resolve(&self, requested: Option<&str>, configured_default: Option<&str>) -> Resolution {
        let requested = requested.map(str::trim).filter(|r| !r.is_empty());
        if let Some(r) = requested
            && !r.eq_ignore_ascii_case("default")
            && let Some(key) = self.match_name(r)
        {
            return Resolution::Exact(key);
        }
        if let Some(d) = configured_default.map(str::trim).filter(|d| !d.is_empty()) {
            return Resolution::Default(self.match_name(d).unwrap_or_else(|| d.to_string()));
        }
        match self.registry_default() {
            Some(m) => Resolution::Default(m.key.clone()),
            None => Resolution::Unspecified,
        }
    }

    fn match_name(&self, name: &str) -> Option<String> {
        if let Some(m) = self.models.iter().find(|m| m.key == name) {
            return Some(m.key.clone());
        }
        if let Some(m) = self.models.iter().find(|m| m.display_name == name) {
            return Some(m.key.clone());
        }
        if let Some(m) = self
            .models
            .iter()
            .find(|m| m.key.eq_ignore_ascii_case(name) || m.display_name.eq_ignore_ascii_case(name))
        {
            return Some(m.key.clone());
        }
        let wanted = normalise(name);
        self.models
            .iter()
            .find(|m| {
                normalise(&m.key) == wanted
                    || normalise(&m.display_name) == wanted
                    || normalise(m.key.strip_prefix("dashscope_").unwrap_or(&m.key)) == wanted
            })
            .map(|m| m.key.clone())
    }
}

/// Lower-case alphanumerics only: `Qwen3-Coder`, `qwen3_coder` and `qwen3 coder` are one name.
fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ModelRegistry {
        ModelRegistry::from_query_result(&json!({
            "inline": [{"key": "kmodel", "displayName": "K", "isDefault": true}],
            "chat": [
                {"key": "auto", "displayName": "Auto", "isDefault": true, "source": "system"},
                {"key": "dashscope_qwen3_coder", "displayName": "Qwen3-Coder"},
                {"key": "dashscope_qwen_plus_20250428_thinking", "displayName": "Qwen-Plus-Thinking", "isReasoning": true}
            ],
            "assistant": [{"key": "dashscope_qwen3_coder", "displayName": "Qwen3-Coder"}],
        }))
    }

    #[test]
    fn merges_scenes_and_orders_chat_first() {
        let r = sample();
        assert_eq!(r.models[0].key, "auto");
        let coder = r.get("dashscope_qwen3_coder").unwrap();
        assert_eq!(coder.scenes, vec!["chat", "assistant"]);
        assert!(
            r.get("dashscope_qwen_plus_20250428_thinking")
                .unwrap()
                .is_reasoning
        );
        assert_eq!(r.registry_default().unwrap().key, "auto");
    }

    #[test]
    fn logged_out_registry_is_empty() {
        assert!(ModelRegistry::from_query_result(&json!({})).is_empty());
        assert!(ModelRegistry::from_query_result(&json!(null)).is_empty());
        assert!(
            ModelRegistry::from_query_result(&json!({"chat": "x", "a": [{"nokey": 1}]})).is_empty()
        );
    }

    #[test]
    fn resolves_keys_names_and_aliases() {
        let r = sample();
        let exact = |s| r.resolve(Some(s), None);
        assert_eq!(
            exact("dashscope_qwen3_coder"),
            Resolution::Exact("dashscope_qwen3_coder".into())
        );
        assert_eq!(
            exact("Qwen3-Coder"),
            Resolution::Exact("dashscope_qwen3_coder".into())
        );
        assert_eq!(
            exact("qwen3-coder"),
            Resolution::Exact("dashscope_qwen3_coder".into())
        );
        assert_eq!(
            exact("QWEN3_CODER"),
            Resolution::Exact("dashscope_qwen3_coder".into())
        );
        assert_eq!(exact("gpt-4o"), Resolution::Default("auto".into()));
        assert_eq!(exact("default"), Resolution::Default("auto".into()));
        assert_eq!(
            r.resolve(Some("gpt-4o"), Some("Qwen3-Coder")),
            Resolution::Default("dashscope_qwen3_coder".into())
        );
        assert_eq!(
            r.resolve(None, Some("custom_key")),
            Resolution::Default("custom_key".into())
        );
        assert_eq!(
            ModelRegistry::default().resolve(Some("x"), None),
            Resolution::Unspecified
        );
    }
}
