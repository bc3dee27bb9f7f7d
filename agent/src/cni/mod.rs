//! The CNI plugin: spec types and the ADD/DEL/CHECK/GC/STATUS/VERSION verbs.
