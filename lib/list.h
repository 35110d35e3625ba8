/* SPDX-License-Identifier: MIT */
/*
 * list.h — the library's one linked list: circular and doubly linked, its
 * node embedded in the element (libuv's uv__queue, the Linux kernel's
 * list_head).  The head is a node too, so the first and the last element
 * are no special case, and an element finds its way back from its node with
 * WP_LIST_ENTRY (container_of).  Nothing is allocated.
 *
 * Costs: insert at either end, remove, "is it linked" and "is it empty" are
 * O(1); finding an element is a walk, O(n).  A node is two pointers.
 *
 * A node that is not on a list points at itself (wp__list_init, and
 * wp__list_remove leaves it so), which is what wp__list_linked() asks; so
 * initialise every node before its first use.  A head, or a node on a list,
 * must not be copied or moved: its neighbours point at it.  Not thread-safe: each list
 * is guarded by its owner's lock, or owned by one thread — each use says
 * which.
 */
#ifndef WP_LIST_H
#define WP_LIST_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct wp_list {
    struct wp_list *next, *prev;
} wp_list;

/* The element of type `type` whose member `member` is the node `node`. */
#define WP_LIST_ENTRY(node, type, member) ((type *)(void *)((char *)(node) - offsetof(type, member)))

/* Every node of the list `head`, front to back.  The body may remove `node`
   only if it then leaves the loop; to empty a list, pop from the front
   (wp__list_first, wp__list_remove) instead. */
#define WP_LIST_FOREACH(node, head) for (wp_list *node = (head)->next; node != (head); node = node->next)

/* An empty list, or a node on no list. */
static inline void wp__list_init(wp_list *n)
{
    n->next = n;
    n->prev = n;
}

static inline bool wp__list_empty(const wp_list *head)
{
    return head->next == head;
}

/* Is the node on a list?  (For a head: is the list non-empty.) */
static inline bool wp__list_linked(const wp_list *n)
{
    return n->next != n;
}

/* The first node, or NULL when the list is empty. */
static inline wp_list *wp__list_first(const wp_list *head)
{
    return wp__list_empty(head) ? NULL : head->next;
}

/* n, on no list, goes between prev and next. */
static inline void wp__list_link_between(wp_list *n, wp_list *prev, wp_list *next)
{
    assert(!wp__list_linked(n));
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void wp__list_push_back(wp_list *head, wp_list *n)
{
    wp__list_link_between(n, head->prev, head);
}

static inline void wp__list_push_front(wp_list *head, wp_list *n)
{
    wp__list_link_between(n, head, head->next);
}

/* Take n off its list (a node on none stays as it is). */
static inline void wp__list_remove(wp_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    wp__list_init(n);
}

/* Move every node of `from` to the back of `to`, in order; `from` is left
   empty.  O(1): two lists are spliced, no node is visited. */
static inline void wp__list_move_all(wp_list *from, wp_list *to)
{
    if (wp__list_empty(from))
        return;
    wp_list *first = from->next, *last = from->prev;
    first->prev = to->prev;
    to->prev->next = first;
    last->next = to;
    to->prev = last;
    wp__list_init(from);
}

#endif
