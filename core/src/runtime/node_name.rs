//! Whether a node runs without a name of its own.

use crate::config::Config;

/// A warning for a configuration without `nodeName`, or `None` if it has
/// one.
///
/// Without `nodeName` a node takes an id derived from its seed, which a
/// runtime draws afresh at every start: each restart joins as a member
/// nobody has seen, and the old id lingers in every other node's member
/// list as a tombstone until it expires. Runtimes log this at start.
///
/// ```
/// use mqtt_cluster_core::runtime::unnamed_node_warning;
/// use mqtt_cluster_core::Config;
/// let config = Config::core("127.0.0.1", 8884);
/// assert!(unnamed_node_warning(&config).is_some());
/// let named = Config::from_yaml_str("core: true\nnodeName: core1\nopenCluster: true\n").unwrap();
/// assert!(unnamed_node_warning(&named).is_none());
/// ```
pub fn unnamed_node_warning(config: &Config) -> Option<String> {
    config.node_name.is_none().then(|| {
        "no nodeName configured: this node takes a new id at every start, so each restart \
         looks like a new member to the cluster; set nodeName to keep one id"
            .to_owned()
    })
}
