//! Address allocation from the node's pod CIDR with a persistent store.
