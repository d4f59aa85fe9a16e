// SPDX-License-Identifier: GPL-2.0
/*
 * Data shared between programs and user space through an arena (cases/test_arena.py),
 * after the kernel selftests' arena_list.c and arena_htab.c (written anew here). Every
 * pointer a program stores is the user address of its target, so user space follows the
 * same pointers in its mapping, and a program follows pointers user space stored.
 *
 * Allocation: `heap`, a bump allocator over pages from bpf_arena_alloc_pages (an __arena
 * global; nothing is freed before the object is closed).
 *
 *   alloc_pages  ctx page_args: pages for user space to fill (ptr, or 0)
 *   copy_in      ctx copy_args: buf[0..len) -> arena at ptr (u64 words, len <= 256)
 *   copy_out     ctx copy_args: arena at ptr -> buf[0..len)
 *   list_build   ctx list_args: `count` nodes pushed at the head (so the list runs from
 *                index count-1 down to 0), value = base + index * index
 *   list_walk    ctx list_args: follow `head`; count, sum of values, and each node's `seen`
 *                set to its 1-based position
 *   htab_build   ctx htab_args: a chained hash table of `n_buckets` (a power of two)
 *                buckets holding `count` keys key_base + 7 * i, value = key * 3 + 1
 *   htab_lookup  ctx htab_args: `key` in `table`: found, value; with `add`, the value is
 *                increased by it in place
 *   htab_sum     ctx htab_args: every node of `table`: count, sum of values, and
 *                `misplaced` (nodes in a bucket their key does not hash to)
 *
 * Layouts are mirrored in cases/test_arena.py; the hash is kmx_hash below (and there).
 */
#define ARENA_PAGES 64
#include "arena_map.h"

struct heap {
	__u64 cur;	/* next free byte (user address), 0: none */
	__u64 left;	/* bytes left in the current page */
	__u64 pages;	/* pages taken from the arena */
};

struct heap __arena heap;

static __always_inline void __arena *heap_alloc(__u64 size)
{
	void __arena *page;
	__u64 at;

	size = (size + 7) & ~7ULL;
	if (size > ARENA_PAGE_SIZE)
		return NULL;
	if (heap.left < size) {
		page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!page)
			return NULL;
		heap.cur = (__u64)page;
		heap.left = ARENA_PAGE_SIZE;
		heap.pages++;
	}
	at = heap.cur;
	heap.cur += size;
	heap.left -= size;
	return (void __arena *)at;
}

/* ---------------------------------------------------------------- raw bytes */

struct page_args {
	__u64 count;
	__u64 ptr;
};

SEC("syscall")
int alloc_pages(struct page_args *a)
{
	a->ptr = (__u64)bpf_arena_alloc_pages(&arena, NULL, (__u32)a->count, NUMA_NO_NODE, 0);
	return 0;
}

#define COPY_WORDS 32

struct copy_args {
	__u64 ptr;
	__u64 len;		/* bytes, a multiple of 8, <= 8 * COPY_WORDS */
	__u64 buf[COPY_WORDS];
};

SEC("syscall")
int copy_in(struct copy_args *a)
{
	__u64 __arena *dst = (__u64 __arena *)a->ptr;
	__u64 words = a->len / 8;

	arena_associate(arena);
#pragma unroll
	for (int i = 0; i < COPY_WORDS; i++)
		if (i < words)
			dst[i] = a->buf[i];
	return 0;
}

SEC("syscall")
int copy_out(struct copy_args *a)
{
	__u64 __arena *src = (__u64 __arena *)a->ptr;
	__u64 words = a->len / 8;

	arena_associate(arena);
#pragma unroll
	for (int i = 0; i < COPY_WORDS; i++)
		if (i < words)
			a->buf[i] = src[i];
	return 0;
}

/* ---------------------------------------------------------------- list */

struct list_node {
	struct list_node __arena *next;
	__u64 value;
	__u64 index;
	__u64 seen;
};

struct list_args {
	__u64 head;
	__u64 count;
	__u64 base;
	__u64 sum;
	__u64 pages;
};

SEC("syscall")
int list_build(struct list_args *a)
{
	struct list_node __arena *head = NULL, *n;
	__u64 i, sum = 0;

	for (i = 0; i < a->count && can_loop; i++) {
		n = heap_alloc(sizeof(*n));
		if (!n)
			return 1;
		n->index = i;
		n->value = a->base + i * i;
		n->seen = 0;
		n->next = head;
		head = n;
		sum += n->value;
	}
	a->head = (__u64)head;
	a->sum = sum;
	a->pages = heap.pages;
	return 0;
}

SEC("syscall")
int list_walk(struct list_args *a)
{
	struct list_node __arena *n;
	__u64 count = 0, sum = 0;

	arena_associate(arena);
	for (n = (struct list_node __arena *)a->head; n && can_loop; n = n->next) {
		count++;
		sum += n->value;
		n->seen = count;
	}
	a->count = count;
	a->sum = sum;
	return 0;
}

/* ---------------------------------------------------------------- hash table */

struct hnode {
	struct hnode __arena *next;
	__u64 key;
	__u64 value;
};

struct htab {
	__u64 n_buckets;
	__u64 count;
	struct hnode __arena * __arena *buckets;
};

struct htab_args {
	__u64 table;
	__u64 n_buckets;
	__u64 count;
	__u64 key_base;
	__u64 key;
	__u64 add;
	__u64 found;
	__u64 value;
	__u64 sum;
	__u64 misplaced;
};

/* Fibonacci hashing of the low 32 bits; n_buckets is a power of two */
static __always_inline __u64 kmx_hash(__u64 key, __u64 n_buckets)
{
	return ((__u32)key * 2654435769U) & (n_buckets - 1);
}

#define MAX_BUCKETS (ARENA_PAGE_SIZE / sizeof(void *))

SEC("syscall")
int htab_build(struct htab_args *a)
{
	struct hnode __arena * __arena *buckets;
	struct htab __arena *t;
	struct hnode __arena *n;
	__u64 i, b, key;

	if (!a->n_buckets || a->n_buckets > MAX_BUCKETS || (a->n_buckets & (a->n_buckets - 1)))
		return 1;
	t = heap_alloc(sizeof(*t));
	buckets = heap_alloc(a->n_buckets * sizeof(*buckets));
	if (!t || !buckets)
		return 2;
	for (i = 0; i < a->n_buckets && can_loop; i++)
		buckets[i] = NULL;
	t->n_buckets = a->n_buckets;
	t->count = 0;
	t->buckets = buckets;
	for (i = 0; i < a->count && can_loop; i++) {
		n = heap_alloc(sizeof(*n));
		if (!n)
			return 3;
		key = a->key_base + 7 * i;
		b = kmx_hash(key, t->n_buckets);
		n->key = key;
		n->value = key * 3 + 1;
		n->next = buckets[b];
		buckets[b] = n;
		t->count++;
	}
	a->table = (__u64)t;
	return 0;
}

SEC("syscall")
int htab_lookup(struct htab_args *a)
{
	struct htab __arena *t = (struct htab __arena *)a->table;
	struct hnode __arena *n;

	arena_associate(arena);
	a->found = 0;
	if (!t->n_buckets)
		return 1;
	for (n = t->buckets[kmx_hash(a->key, t->n_buckets)]; n && can_loop; n = n->next) {
		if (n->key != a->key)
			continue;
		n->value += a->add;
		a->found = 1;
		a->value = n->value;
		break;
	}
	return 0;
}

SEC("syscall")
int htab_sum(struct htab_args *a)
{
	struct htab __arena *t = (struct htab __arena *)a->table;
	__u64 b, count = 0, sum = 0, misplaced = 0;
	struct hnode __arena *n;

	arena_associate(arena);
	for (b = 0; b < t->n_buckets && can_loop; b++) {
		for (n = t->buckets[b]; n && can_loop; n = n->next) {
			count++;
			sum += n->value;
			if (kmx_hash(n->key, t->n_buckets) != b)
				misplaced++;
		}
	}
	a->count = count;
	a->sum = sum;
	a->misplaced = misplaced;
	return 0;
}
