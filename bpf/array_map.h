/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ARRAY_MAP(name, entries, value_type): a BPF_MAP_TYPE_ARRAY with __u32 keys, the map
 * shape nearly every program of the suite uses for its configuration and counters (the
 * harness reads them with Map.lookup_int / writes them with Map.update). Spelled out:
 *
 *	struct {
 *		__uint(type, BPF_MAP_TYPE_ARRAY);
 *		__uint(max_entries, entries);
 *		__type(key, __u32);
 *		__type(value, value_type);
 *	} name SEC(".maps");
 *
 * Include after vmlinux.h and <bpf/bpf_helpers.h>.
 */
#pragma once

#define ARRAY_MAP(name, entries, value_type)	\
	struct {				\
		__uint(type, BPF_MAP_TYPE_ARRAY);	\
		__uint(max_entries, entries);	\
		__type(key, __u32);		\
		__type(value, value_type);	\
	} name SEC(".maps")
