/*
 * Thin C layer between the TypeScript binding (yang/libyang/) and libyang 2.1.30, compiled into libyang.wasm.
 *
 * Why it exists: libyang's structures (lys_module, lysc_node, ly_err_item, ...) are only safe to read from C,
 * and several helpers (lyd_get_value, lysc_is_key, ...) are inline or macros that a wasm export cannot reach.
 * Every composite answer is returned as a malloc'd JSON string the binding parses and frees with tdm_free(),
 * so JavaScript never reads a libyang struct or depends on a field offset.
 *
 * Conventions: functions returning int return a libyang LY_ERR (0 = LY_SUCCESS); errors are then read with
 * tdm_errors(). Out-parameters are `struct lyd_node **` slots allocated by the binding.
 * build.sh exports every function whose definition line starts with TDM_EXPORT.
 */
#include <emscripten.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libyang.h"

#define TDM_EXPORT EMSCRIPTEN_KEEPALIVE

/* ---------- growable string buffer with JSON escaping ---------- */

struct tdm_buf {
    char *s;
    size_t len, cap;
    int oom;
};

static void buf_put(struct tdm_buf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_str(struct tdm_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_fmt(struct tdm_buf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) {
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
    }
}

/* A JSON string literal, or null for NULL. */
static void buf_json(struct tdm_buf *b, const char *s)
{
    if (!s) {
        buf_str(b, "null");
        return;
    }
    buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            buf_put(b, esc, 2);
        } else if (*p < 0x20) {
            buf_fmt(b, "\\u%04x", *p);
        } else {
            buf_put(b, (const char *)p, 1);
        }
    }
    buf_put(b, "\"", 1);
}

/* "key":"value" with a leading comma unless first. */
static void buf_member(struct tdm_buf *b, const char *key, const char *value, int first)
{
    if (!first) {
        buf_put(b, ",", 1);
    }
    buf_json(b, key);
    buf_put(b, ":", 1);
    buf_json(b, value);
}

static char *buf_done(struct tdm_buf *b)
{
    if (b->oom) {
        free(b->s);
        return NULL;
    }
    if (!b->s) {
        return strdup("");
    }
    return b->s;
}

/* ---------- memory and errors ---------- */

TDM_EXPORT void tdm_free(void *p)
{
    free(p);
}

/* Bytes in use on the wasm heap (dlmalloc's count), for leak tests. */
TDM_EXPORT int tdm_heap_used(void)
{
    struct mallinfo mi = mallinfo();
    return (int)mi.uordblks;
}

/* All errors stored in the context, oldest first, as a JSON array; clears them. */
TDM_EXPORT char *tdm_errors(struct ly_ctx *ctx)
{
    struct tdm_buf b = {0};
    buf_str(&b, "[");
    int first = 1;
    for (struct ly_err_item *e = ctx ? ly_err_first(ctx) : NULL; e; e = e->next) {
        if (e->level != LY_LLERR) {
            continue;
        }
        buf_str(&b, first ? "{" : ",{");
        first = 0;
        buf_fmt(&b, "\"no\":%d,\"vecode\":%d", (int)e->no, (int)e->vecode);
        buf_member(&b, "msg", e->msg, 0);
        buf_member(&b, "path", e->path, 0);
        buf_member(&b, "apptag", e->apptag, 0);
        buf_str(&b, "}");
    }
    buf_str(&b, "]");
    if (ctx) {
        ly_err_clean(ctx, NULL);
    }
    return buf_done(&b);
}

/* Drop records left by earlier calls that succeeded anyway (e.g. an update to an existing value), so that
 * after a failure the context holds exactly this call's errors. */
static void err_reset(const struct ly_ctx *ctx)
{
    if (ctx && ly_err_first(ctx)) {
        ly_err_clean((struct ly_ctx *)ctx, NULL);
    }
}

static void err_reset_tree(const struct lyd_node *tree)
{
    if (tree) {
        err_reset(LYD_CTX(tree));
    }
}

/* ---------- context and modules ---------- */

/* searchdirs: directories separated by ':' (may be empty). Store every error, print none. */
TDM_EXPORT struct ly_ctx *tdm_ctx_new(const char *searchdirs)
{
    struct ly_ctx *ctx = NULL;
    ly_log_options(LY_LOSTORE);
    ly_log_level(LY_LLERR);
    if (ly_ctx_new(searchdirs && searchdirs[0] ? searchdirs : NULL, LY_CTX_DISABLE_SEARCHDIR_CWD, &ctx)) {
        return NULL;
    }
    return ctx;
}

TDM_EXPORT void tdm_ctx_free(struct ly_ctx *ctx)
{
    ly_ctx_destroy(ctx);
}

static void module_info(struct tdm_buf *b, const struct lys_module *mod)
{
    buf_str(b, "{");
    buf_member(b, "name", mod->name, 1);
    buf_member(b, "revision", mod->revision, 0);
    buf_member(b, "namespace", mod->ns, 0);
    buf_member(b, "prefix", mod->prefix, 0);
    buf_fmt(b, ",\"implemented\":%s,\"features\":[", mod->implemented ? "true" : "false");
    int first = 1;
    if (mod->parsed) {
        uint32_t idx = 0;
        struct lysp_feature *f = NULL;
        while ((f = lysp_feature_next(f, mod->parsed, &idx))) {
            if (f->flags & LYS_FENABLED) {
                if (!first) {
                    buf_str(b, ",");
                }
                first = 0;
                buf_json(b, f->name);
            }
        }
    }
    buf_str(b, "],\"submodules\":[");
    first = 1;
    if (mod->parsed) {
        LY_ARRAY_COUNT_TYPE u;
        LY_ARRAY_FOR(mod->parsed->includes, u) {
            const struct lysp_include *inc = &mod->parsed->includes[u];
            const char *rev = inc->rev[0] ? inc->rev : NULL;
            if (!rev && inc->submodule && inc->submodule->revs) {
                rev = inc->submodule->revs[0].date;
            }
            buf_str(b, first ? "{" : ",{");
            first = 0;
            buf_member(b, "name", inc->name, 1);
            buf_member(b, "revision", rev, 0);
            buf_str(b, "}");
        }
    }
    buf_str(b, "]}");
}

/* features: names separated by ',' ("*" = all), or NULL/"" for none. */
TDM_EXPORT char *tdm_load_module(struct ly_ctx *ctx, const char *name, const char *revision, const char *features)
{
    err_reset(ctx);
    const char *list[64];
    char *copy = NULL;
    const char **feats = NULL;
    if (features && features[0]) {
        copy = strdup(features);
        if (!copy) {
            return NULL;
        }
        int n = 0;
        for (char *tok = strtok(copy, ","); tok && n < 63; tok = strtok(NULL, ",")) {
            list[n++] = tok;
        }
        list[n] = NULL;
        feats = list;
    }
    struct lys_module *mod = ly_ctx_load_module(ctx, name, revision && revision[0] ? revision : NULL, feats);
    free(copy);
    if (!mod) {
        return NULL;
    }
    struct tdm_buf b = {0};
    module_info(&b, mod);
    return buf_done(&b);
}

TDM_EXPORT char *tdm_modules(struct ly_ctx *ctx)
{
    struct tdm_buf b = {0};
    uint32_t idx = 0;
    int first = 1;
    const struct lys_module *mod;
    buf_str(&b, "[");
    while ((mod = ly_ctx_get_module_iter(ctx, &idx))) {
        if (!first) {
            buf_str(&b, ",");
        }
        first = 0;
        module_info(&b, mod);
    }
    buf_str(&b, "]");
    return buf_done(&b);
}

/* Module or submodule text; format 0 = yang, 1 = yin. NULL when unknown. */
TDM_EXPORT char *tdm_schema_text(struct ly_ctx *ctx, const char *name, const char *revision, int yin)
{
    err_reset(ctx);
    LYS_OUTFORMAT fmt = yin ? LYS_OUT_YIN : LYS_OUT_YANG;
    const char *rev = revision && revision[0] ? revision : NULL;
    char *out = NULL;
    const struct lys_module *mod = rev ? ly_ctx_get_module(ctx, name, rev) : ly_ctx_get_module_latest(ctx, name);
    if (mod) {
        if (lys_print_mem(&out, mod, fmt, 0)) {
            return NULL;
        }
        return out;
    }
    const struct lysp_submodule *sub = ly_ctx_get_submodule(ctx, name, rev);
    if (!sub) {
        return NULL;
    }
    struct ly_out *o = NULL;
    if (ly_out_new_memory(&out, 0, &o)) {
        return NULL;
    }
    LY_ERR r = lys_print_submodule(o, sub, fmt, 0, 0);
    ly_out_free(o, NULL, 0);
    if (r) {
        free(out);
        return NULL;
    }
    return out;
}

/* ietf-yang-library data (RFC 8525, with the deprecated modules-state) describing the context. content_id
 * NULL or "" uses libyang's change counter. */
TDM_EXPORT int tdm_yanglib(struct ly_ctx *ctx, const char *content_id, struct lyd_node **out)
{
    err_reset(ctx);
    *out = NULL;
    if (content_id && content_id[0]) {
        return ly_ctx_get_yanglib_data(ctx, out, "%s", content_id);
    }
    return ly_ctx_get_yanglib_data(ctx, out, "%u", (unsigned)ly_ctx_get_change_count(ctx));
}

/* ---------- schema nodes ---------- */

static const char *nodetype_name(uint16_t t)
{
    switch (t) {
    case LYS_CONTAINER: return "container";
    case LYS_LEAF: return "leaf";
    case LYS_LEAFLIST: return "leaf-list";
    case LYS_LIST: return "list";
    case LYS_CHOICE: return "choice";
    case LYS_CASE: return "case";
    case LYS_ANYDATA: return "anydata";
    case LYS_ANYXML: return "anyxml";
    case LYS_RPC: return "rpc";
    case LYS_ACTION: return "action";
    case LYS_NOTIF: return "notification";
    case LYS_INPUT: return "input";
    case LYS_OUTPUT: return "output";
    default: return "unknown";
    }
}

static void schema_info(struct tdm_buf *b, const struct lysc_node *node)
{
    const struct ly_ctx *ctx = node->module->ctx;
    int data_path = !(node->nodetype & (LYS_CHOICE | LYS_CASE));
    char *path = lysc_path(node, data_path ? LYSC_PATH_DATA : LYSC_PATH_LOG, NULL, 0);
    buf_str(b, "{");
    buf_member(b, "path", path, 1);
    free(path);
    buf_member(b, "module", node->module->name, 0);
    buf_member(b, "name", node->name, 0);
    buf_member(b, "kind", nodetype_name(node->nodetype), 0);
    buf_fmt(b, ",\"config\":%s", (node->flags & LYS_CONFIG_W) ? "true" : "false");
    buf_fmt(b, ",\"orderedByUser\":%s", lysc_is_userordered(node) ? "true" : "false");
    buf_fmt(b, ",\"presence\":%s", (node->nodetype == LYS_CONTAINER && (node->flags & LYS_PRESENCE)) ? "true" : "false");
    buf_str(b, ",\"keys\":[");
    if (node->nodetype == LYS_LIST) {
        int first = 1;
        for (const struct lysc_node *k = lysc_node_child(node); k && lysc_is_key(k); k = k->next) {
            if (!first) {
                buf_str(b, ",");
            }
            first = 0;
            buf_json(b, k->name);
        }
    }
    buf_str(b, "]");
    const struct lyd_value *dflt = NULL;
    if (node->nodetype == LYS_LEAF) {
        dflt = ((const struct lysc_node_leaf *)node)->dflt;
    } else if (node->nodetype == LYS_LEAFLIST) {
        struct lyd_value **d = ((const struct lysc_node_leaflist *)node)->dflts;
        dflt = (d && LY_ARRAY_COUNT(d)) ? d[0] : NULL;
    }
    if (dflt) {
        buf_member(b, "defaultValue", lyd_value_get_canonical(ctx, dflt), 0);
    }
    /* The choices/cases between the node and its data parent, outermost first (libyang compiles shorthand
     * cases into real case nodes, so the chain alternates case, choice, case, ... going up). */
    const struct lysc_node *chain[32];
    int n = 0;
    for (const struct lysc_node *p = node->parent; p && (p->nodetype & (LYS_CHOICE | LYS_CASE)) && n < 32; p = p->parent) {
        chain[n++] = p;
    }
    if (n) {
        int first = 1;
        buf_str(b, ",\"cases\":[");
        for (int i = n - 1; i > 0; --i) {
            if (chain[i]->nodetype == LYS_CHOICE && chain[i - 1]->nodetype == LYS_CASE) {
                char *cpath = lysc_path(chain[i], LYSC_PATH_LOG, NULL, 0);
                buf_str(b, first ? "{" : ",{");
                first = 0;
                buf_member(b, "choice", cpath, 1);
                buf_member(b, "caseName", chain[i - 1]->name, 0);
                buf_str(b, "}");
                free(cpath);
            }
        }
        buf_str(b, "]");
    }
    buf_str(b, "}");
}

/* Schema children as the binding lists them: choices and cases are returned, not looked through. */
#define TDM_GETNEXT (LYS_GETNEXT_WITHCHOICE | LYS_GETNEXT_WITHCASE)

/* The schema node at a path in data-path form (predicates ignored), whose steps may also name choices and
 * cases, as SchemaNodeInfo.path does for them (e.g. /m:settings/transport/tcp). NULL when absent. */
static const struct lysc_node *find_schema(struct ly_ctx *ctx, const char *path)
{
    const struct lysc_node *node = lys_find_path(ctx, NULL, path, 0);
    if (node) {
        return node;
    }
    ly_err_clean(ctx, NULL);
    if (path[0] != '/') {
        return NULL;
    }
    char *copy = strdup(path);
    if (!copy) {
        return NULL;
    }
    /* drop predicates, minding quoted strings inside them */
    char *w = copy, quote = 0;
    int depth = 0;
    for (const char *r = path; *r; ++r) {
        if (quote) {
            quote = (*r == quote) ? 0 : quote;
        } else if (depth) {
            if (*r == '\'' || *r == '"') {
                quote = *r;
            } else if (*r == '[') {
                depth++;
            } else if (*r == ']') {
                depth--;
            }
        } else if (*r == '[') {
            depth = 1;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    const struct lys_module *mod = NULL;
    const struct lysc_node *parent = NULL;
    char *save = NULL;
    node = NULL;
    for (char *seg = strtok_r(copy, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        const char *name = seg;
        char *colon = strchr(seg, ':');
        if (colon) {
            *colon = '\0';
            mod = ly_ctx_get_module_implemented(ctx, seg);
            name = colon + 1;
        }
        const struct lysc_node *found = NULL, *it = NULL;
        if (mod && (parent || mod->compiled)) {
            while ((it = lys_getnext(it, parent, parent ? NULL : mod->compiled, TDM_GETNEXT))) {
                if (it->module == mod && !strcmp(it->name, name)) {
                    found = it;
                    break;
                }
            }
        }
        node = parent = found;
        if (!found) {
            break;
        }
    }
    free(copy);
    return node;
}

/* JSON object for the schema node at path (see find_schema), or NULL (no error stored) when absent. */
TDM_EXPORT char *tdm_schema_node(struct ly_ctx *ctx, const char *path)
{
    const struct lysc_node *node = find_schema(ctx, path);
    if (!node) {
        return NULL;
    }
    struct tdm_buf b = {0};
    schema_info(&b, node);
    return buf_done(&b);
}

/* Schema children of the node at path (choices and cases included: a choice's children are its cases), or
 * the top-level nodes of every implemented module when path is "/". NULL when the path is unknown. */
TDM_EXPORT char *tdm_schema_children(struct ly_ctx *ctx, const char *path)
{
    struct tdm_buf b = {0};
    int first = 1;
    buf_str(&b, "[");
    if (!strcmp(path, "/")) {
        uint32_t idx = 0;
        const struct lys_module *mod;
        while ((mod = ly_ctx_get_module_iter(ctx, &idx))) {
            if (!mod->implemented || !mod->compiled) {
                continue;
            }
            const struct lysc_node *n = NULL;
            while ((n = lys_getnext(n, NULL, mod->compiled, TDM_GETNEXT))) {
                buf_str(&b, first ? "" : ",");
                first = 0;
                schema_info(&b, n);
            }
        }
    } else {
        const struct lysc_node *parent = find_schema(ctx, path);
        if (!parent) {
            free(b.s);
            return NULL;
        }
        const struct lysc_node *n = NULL;
        while ((n = lys_getnext(n, parent, NULL, TDM_GETNEXT))) {
            buf_str(&b, first ? "" : ",");
            first = 0;
            schema_info(&b, n);
        }
    }
    buf_str(&b, "]");
    return buf_done(&b);
}

/* ---------- data trees ---------- */

enum tdm_kind { TDM_CONFIG = 0, TDM_DATA = 1, TDM_RPC = 2, TDM_REPLY = 3, TDM_NOTIF = 4 };

/* Parses text (format 0 = XML, 1 = JSON). For replies, rpc_path names the RPC: the reply's output nodes are
 * then parsed as children of a new RPC node (the text holds only the output children). Operations are
 * validated against dep_tree (may be NULL). *out gets the first top-level node of the new tree (NULL for an
 * empty document). */
TDM_EXPORT int tdm_parse(struct ly_ctx *ctx, const char *text, int format, int kind, int strict, int validate,
        const char *rpc_path, struct lyd_node *dep_tree, struct lyd_node **out)
{
    err_reset(ctx);
    LYD_FORMAT fmt = format ? LYD_JSON : LYD_XML;
    struct ly_in *in = NULL;
    struct lyd_node *tree = NULL, *op = NULL;
    LY_ERR r;
    *out = NULL;
    if ((r = ly_in_new_memory(text, &in))) {
        return r;
    }
    if (kind == TDM_CONFIG || kind == TDM_DATA) {
        uint32_t popts = (strict ? LYD_PARSE_STRICT : 0) | (validate ? 0 : LYD_PARSE_ONLY);
        /* Config is a whole datastore: every module's constraints apply, even with no data of it. State data
         * is validated only for modules that have data in the document (ietf-yang-library, for one, has
         * mandatory state nodes that a partial state tree never carries). */
        uint32_t vopts = LYD_VALIDATE_PRESENT;
        if (kind == TDM_CONFIG) {
            popts |= LYD_PARSE_NO_STATE;
            vopts = LYD_VALIDATE_NO_STATE;
        }
        r = lyd_parse_data(ctx, NULL, in, fmt, popts, vopts, &tree);
        ly_in_free(in, 0);
        if (r) {
            lyd_free_all(tree);
            return r;
        }
        *out = tree;
        return LY_SUCCESS;
    }

    enum lyd_type type = kind == TDM_RPC ? LYD_TYPE_RPC_YANG : kind == TDM_REPLY ? LYD_TYPE_REPLY_YANG : LYD_TYPE_NOTIF_YANG;
    if (kind == TDM_REPLY && rpc_path && rpc_path[0]) {
        struct lyd_node *top = NULL;
        /* op = the RPC/action node itself, the last node created (an action has its parents created first) */
        if ((r = lyd_new_path2(NULL, ctx, rpc_path, NULL, 0, 0, 0, &top, &op))) {
            lyd_free_all(top);
            ly_in_free(in, 0);
            return r;
        }
        r = lyd_parse_op(ctx, op, in, fmt, type, NULL, NULL);
        ly_in_free(in, 0);
        tree = op;
        while (tree->parent) {
            tree = lyd_parent(tree);
        }
    } else {
        r = lyd_parse_op(ctx, NULL, in, fmt, type, &tree, &op);
        ly_in_free(in, 0);
    }
    if (!r && !op) {
        r = LY_ENOT; /* the document held no operation node; the binding reports it */
    }
    if (!r && validate) {
        /* dep_tree (e.g. the running datastore) resolves leafrefs/must/when that point outside the operation */
        r = lyd_validate_op(op, dep_tree, type, NULL);
    }
    if (r) {
        lyd_free_all(tree);
        return r;
    }
    *out = lyd_first_sibling(tree);
    return LY_SUCCESS;
}

TDM_EXPORT int tdm_validate(struct ly_ctx *ctx, struct lyd_node **tree, int config_only)
{
    err_reset(ctx);
    /* same module scope as tdm_parse: config = all modules, state = modules present in the tree */
    LY_ERR r = lyd_validate_all(tree, ctx, config_only ? LYD_VALIDATE_NO_STATE : LYD_VALIDATE_PRESENT, NULL);
    if (*tree) {
        *tree = lyd_first_sibling(*tree);
    }
    return r;
}

/* wd: 0 explicit, 1 trim, 2 report-all, 3 report-all-tagged. Empty tree prints "". */
TDM_EXPORT char *tdm_print(struct lyd_node *tree, int format, int wd, int pretty)
{
    err_reset_tree(tree);
    static const uint32_t wd_flags[] = {LYD_PRINT_WD_EXPLICIT, LYD_PRINT_WD_TRIM, LYD_PRINT_WD_ALL, LYD_PRINT_WD_ALL_TAG};
    char *out = NULL;
    if (!tree) {
        return strdup("");
    }
    uint32_t opts = LYD_PRINT_WITHSIBLINGS | wd_flags[wd & 3] | (pretty ? 0 : LYD_PRINT_SHRINK);
    if (lyd_print_mem(&out, tree, format ? LYD_JSON : LYD_XML, opts)) {
        free(out);
        return NULL;
    }
    return out ? out : strdup("");
}

TDM_EXPORT int tdm_dup(struct lyd_node *tree, struct lyd_node **out)
{
    err_reset_tree(tree);
    *out = NULL;
    if (!tree) {
        return LY_SUCCESS;
    }
    return lyd_dup_siblings(tree, NULL, LYD_DUP_RECURSIVE | LYD_DUP_WITH_FLAGS, out);
}

TDM_EXPORT int tdm_merge(struct lyd_node **target, struct lyd_node *source)
{
    err_reset_tree(source);
    if (!source) {
        return LY_SUCCESS;
    }
    LY_ERR r = lyd_merge_siblings(target, source, LYD_MERGE_WITH_FLAGS);
    if (*target) {
        *target = lyd_first_sibling(*target);
    }
    return r;
}

/* Diff printed in format; *out is NULL when the trees are equal. */
TDM_EXPORT int tdm_diff(struct lyd_node *first, struct lyd_node *second, int format, char **out)
{
    err_reset_tree(first ? first : second);
    struct lyd_node *diff = NULL;
    *out = NULL;
    LY_ERR r = lyd_diff_siblings(first, second, 0, &diff);
    if (r || !diff) {
        lyd_free_all(diff);
        return r;
    }
    r = lyd_print_mem(out, diff, format ? LYD_JSON : LYD_XML, LYD_PRINT_WITHSIBLINGS | LYD_PRINT_SHRINK);
    lyd_free_all(diff);
    return r;
}

/* Nodes matching an XPath, as a JSON array of {path, schemaPath, module, name, value?, isDefault}. */
TDM_EXPORT int tdm_xpath(struct lyd_node *tree, const char *expr, char **out)
{
    err_reset_tree(tree);
    struct ly_set *set = NULL;
    struct tdm_buf b = {0};
    *out = NULL;
    buf_str(&b, "[");
    if (tree) {
        LY_ERR r = lyd_find_xpath(tree, expr, &set);
        if (r) {
            free(b.s);
            return r;
        }
        for (uint32_t i = 0; i < set->count; ++i) {
            const struct lyd_node *n = set->dnodes[i];
            char *path = lyd_path(n, LYD_PATH_STD, NULL, 0);
            buf_str(&b, i ? ",{" : "{");
            buf_member(&b, "path", path, 1);
            free(path);
            if (n->schema) {
                char *spath = lysc_path(n->schema, LYSC_PATH_DATA, NULL, 0);
                buf_member(&b, "schemaPath", spath, 0);
                free(spath);
                buf_member(&b, "module", n->schema->module->name, 0);
                buf_member(&b, "name", n->schema->name, 0);
                if (n->schema->nodetype & LYD_NODE_TERM) {
                    buf_member(&b, "value", lyd_get_value(n), 0);
                }
            } else {
                const struct lyd_node_opaq *o = (const struct lyd_node_opaq *)n;
                buf_member(&b, "schemaPath", "", 0);
                buf_member(&b, "module", o->name.module_name, 0);
                buf_member(&b, "name", o->name.name, 0);
            }
            buf_fmt(&b, ",\"isDefault\":%s", (n->flags & LYD_DEFAULT) ? "true" : "false");
            if (n->meta) {
                /* metadata such as ietf-netconf:operation or yang:insert, keyed "module:name" */
                buf_str(&b, ",\"meta\":{");
                for (const struct lyd_meta *md = n->meta; md; md = md->next) {
                    char key[256];
                    snprintf(key, sizeof key, "%s:%s", md->annotation->module->name, md->name);
                    buf_member(&b, key, lyd_get_meta_value(md), md == n->meta);
                }
                buf_str(&b, "}");
            }
            buf_str(&b, "}");
        }
        ly_set_free(set, NULL);
    }
    buf_str(&b, "]");
    *out = buf_done(&b);
    return *out ? LY_SUCCESS : LY_EMEM;
}

/* Copy of the subtrees matching expr, each with its parents, merged into one new tree. */
TDM_EXPORT int tdm_select(struct lyd_node *tree, const char *expr, struct lyd_node **out)
{
    err_reset_tree(tree);
    struct ly_set *set = NULL;
    struct lyd_node *result = NULL;
    LY_ERR r = LY_SUCCESS;
    *out = NULL;
    if (!tree) {
        return LY_SUCCESS;
    }
    if ((r = lyd_find_xpath(tree, expr, &set))) {
        return r;
    }
    for (uint32_t i = 0; i < set->count && !r; ++i) {
        struct lyd_node *dup = NULL;
        r = lyd_dup_single(set->dnodes[i], NULL, LYD_DUP_RECURSIVE | LYD_DUP_WITH_PARENTS | LYD_DUP_WITH_FLAGS, &dup);
        if (r) {
            break;
        }
        while (dup->parent) {
            dup = lyd_parent(dup);
        }
        r = lyd_merge_tree(&result, dup, LYD_MERGE_DESTRUCT | LYD_MERGE_WITH_FLAGS);
    }
    ly_set_free(set, NULL);
    if (r) {
        lyd_free_all(result);
        return r;
    }
    *out = result ? lyd_first_sibling(result) : NULL;
    return LY_SUCCESS;
}

/* Create or update the node at path (value for leaves/leaf-lists, else NULL). */
TDM_EXPORT int tdm_set_path(struct ly_ctx *ctx, struct lyd_node **tree, const char *path, const char *value)
{
    err_reset(ctx);
    struct lyd_node *created = NULL;
    LY_ERR r = lyd_new_path(*tree, ctx, path, value, LYD_NEW_PATH_UPDATE, &created);
    if (r == LY_EEXIST) {
        r = LY_SUCCESS; /* already there with that value: nothing to do */
    }
    if (!r && !*tree && created) {
        *tree = created;
        while ((*tree)->parent) {
            *tree = lyd_parent(*tree);
        }
    }
    if (*tree) {
        *tree = lyd_first_sibling(*tree);
    }
    return r;
}

static LY_ERR find_path(struct lyd_node *tree, const char *path, struct lyd_node **match)
{
    *match = NULL;
    if (!tree) {
        return LY_ENOTFOUND;
    }
    LY_ERR r = lyd_find_path(tree, path, 0, match);
    /* LY_EINCOMPLETE: only a prefix of the path exists, which for us is simply "not there" */
    return r == LY_EINCOMPLETE ? LY_ENOTFOUND : r;
}

/* Remove the subtree at path: LY_SUCCESS, LY_ENOTFOUND when absent, or an error. */
TDM_EXPORT int tdm_remove_path(struct lyd_node **tree, const char *path)
{
    err_reset_tree(*tree);
    struct lyd_node *node = NULL;
    LY_ERR r = find_path(*tree, path, &node);
    if (r) {
        return r;
    }
    if (node == *tree) {
        *tree = node->next;
    }
    lyd_free_tree(node);
    if (*tree) {
        *tree = lyd_first_sibling(*tree);
    }
    return LY_SUCCESS;
}

/* LY_SUCCESS when a node exists at path, LY_ENOTFOUND when not, or an error (bad path). */
TDM_EXPORT int tdm_exists(struct lyd_node *tree, const char *path)
{
    err_reset_tree(tree);
    struct lyd_node *node = NULL;
    return find_path(tree, path, &node);
}

TDM_EXPORT void tdm_free_tree(struct lyd_node *tree)
{
    lyd_free_all(tree);
}
