//! The local unix-socket API between the CNI plugin / CLI and the agent.
