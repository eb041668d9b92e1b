/* main.c — tensorctl: flags, the connection, and the three ways in (REPL, script, -c).
**
** Usage errors and connection failures exit 2; a failed statement in a script exits 1 after
** reporting `file:line:col: message`; otherwise 0. The REPL uses libedit (line editing,
** history in ~/.tensorctl_history, tab completion); a non-terminal stdin is read as a script.
** Everything about the language is in parse.c and eval.c.
*/
#include <ctype.h>
#include <errno.h>
#include <histedit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/strbuf.h"
#include "eval.h"
#include "ops.h"
#include "parse.h"
#include "tensord.h"

#ifndef TD_VERSION
#define TD_VERSION "0.0.0"
#endif

static const char USAGE[] =
    "usage: tensorctl [options] [script.tdx | -]\n"
    "       tensorctl [options] -c 'stmt; stmt ...'\n"
    "\n"
    "A client for the tensord tensor server. Without a script it starts an interactive\n"
    "prompt (when stdin is a terminal) or reads a script from stdin. Statements are\n"
    "PyTorch's Python with 'torch.' dropped: x = tensor([[1, 2], [3, 4]]); print(x @ x)\n"
    "\n"
    "options:\n"
    "  --addr ADDR      server address: host:port, [v6]:port or unix:/path, a list\n"
    "                   a:7878,b:7878 or dns:NAME:PORT (a new session goes to the\n"
    "                   next node with room; a resume finds the session's node)\n"
    "                   (default $TENSORD_ADDR, else 127.0.0.1:7878)\n"
    "  --token TOKEN    the server's auth token (default $TENSORD_TOKEN)\n"
    "  --resume TOKEN   resume a session by its token (see :session)\n"
    "  -c STMTS         run STMTS (separated by ';' or newlines) and exit\n"
    "  --json           print values as strict JSON (tensors as {shape, dtype, data};\n"
    "                   NaN is null, infinities are the strings \"inf\" and \"-inf\")\n"
    "  --keep-going     report a failed statement and go on (exit status still 1)\n"
    "  -q, --quiet      no banner\n"
    "  -h, --help       this text\n"
    "  --version        print the version\n"
    "Options that take a value also take it as --addr=ADDR, --token=TOKEN, --resume=TOKEN.\n"
    "\n"
    "exit status: 0 success, 1 a statement failed, 2 usage or connection error.\n"
    "'import torch' and 'import numpy as np' are accepted, and torch.X is X.\n"
    "Meta-commands: :help [language|meta|ops] :ls :session :stats :time on|off\n"
    ":save FILE [name ...] :load FILE :quit (also :q, :exit).\n";

static const char HELP_LANGUAGE[] =
    "tensorctl speaks PyTorch's Python with 'torch.' dropped ('import torch' makes torch.X\n"
    "work too; 'import numpy as np' is accepted, but np.X is not available).\n"
    "\n"
    "  x = tensor([[1., 2.], [3., 4.]], requires_grad=True)   creation: tensor zeros ones\n"
    "  y = (x @ x.T).sum(dim=1, keepdim=True)                   full rand randn arange eye ...\n"
    "  y.sum().backward(); print(x.grad)                          autograd\n"
    "  with no_grad(): x -= 0.1 * x.grad                          in-place update\n"
    "  x[0, 1:] = 5; print(f\"{x.sum().item():.3f}\", x.shape)    indexing, f-strings\n"
    "  x[x < 0] = 0; p = logits[range(3), t]                      masks, index tensors\n"
    "  values, indices = x.max(0); a, b = b, a                    unpacking\n"
    "  m = (i & 1) | (i << 2); ok = ~mask                         bitwise operators\n"
    "  g = Generator(); g.manual_seed(0); randn(3, generator=g)   generators\n"
    "  for i in range(3):                                         indented blocks\n"
    "      print(i)\n";

static const char HELP_META[] =
    "meta-commands:\n"
    "  :help [language|meta|ops]   this text, or one part of it\n"
    "  :ls                         the session's tensors (name, shape, dtype, bytes, grad)\n"
    "  :session                    server, version, session token (for --resume), limits\n"
    "  :stats                      the server's counters for this session\n"
    "  :time on|off                print the round-trip time of each statement\n"
    "  :save FILE [name ...]       write tensors (all when no names) as safetensors\n"
    "  :load FILE                  read a safetensors file; each tensor becomes a name\n"
    "                              (layer.weight becomes layer_weight)\n"
    "  :quit                       leave (also :q, :exit; Ctrl-D too)\n";

/* `:help ops`: the ops' list comes from ops.def (tdx_op_help), then this. */
static const char HELP_OPS_HEAD[] =
    "ops (as functions, and as methods on tensors; a trailing _ is in place):\n";
static const char HELP_OPS_REST[] =
    "tensor methods and attributes: item tolist size dim numel backward requires_grad_\n"
    "  retain_grad float double int long bool chunk split unbind index_put_ index_put\n"
    "  .shape .dtype .grad .T .mT .ndim .requires_grad\n"
    "functions: print len range float int bool str abs round list tuple manual_seed no_grad\n"
    "  enable_grad set_grad_enabled is_grad_enabled chunk split unbind Generator\n"
    "  dtypes: float32 float64 int32 int64 bool_\n";

/* The first word of a meta-command line and its argument (the rest, trimmed). */
static void meta_words(const char *line, char *cmd, size_t ncmd, char *arg, size_t narg)
{
    size_t k = strcspn(line, " \t\r\n");
    snprintf(cmd, ncmd, "%.*s", (int)k, line);
    const char *a = line + k;
    while (*a != '\0' && isspace((unsigned char)*a)) {
        a++;
    }
    size_t n = strlen(a);
    while (n > 0 && isspace((unsigned char)a[n - 1])) {
        n--;
    }
    snprintf(arg, narg, "%.*s", (int)n, a);
}

static bool is_quit(const char *cmd)
{
    return strcmp(cmd, ":quit") == 0 || strcmp(cmd, ":q") == 0 || strcmp(cmd, ":exit") == 0;
}

/* `:help [topic]`, one function for the prompt and for scripts: the whole help, or the part
** asked for. An unknown topic is an error (TDX_ERROR), so a script does not go on quietly. */
static int help(const char *topic)
{
    if (topic[0] == '\0') {
        fputs(HELP_LANGUAGE, stdout);
        fputc('\n', stdout);
        fputs(HELP_META, stdout);
    } else if (strcmp(topic, "language") == 0) {
        fputs(HELP_LANGUAGE, stdout);
    } else if (strcmp(topic, "meta") == 0) {
        fputs(HELP_META, stdout);
    } else if (strcmp(topic, "ops") == 0) {
        fputs(HELP_OPS_HEAD, stdout);
        tdx_op_help(stdout, 88);
        fputs(HELP_OPS_REST, stdout);
    } else {
        fprintf(stderr, ":help: unknown topic '%s' (topics: language, meta, ops)\n", topic);
        return TDX_ERROR;
    }
    fflush(stdout);
    return 0;
}

static volatile sig_atomic_t got_sigint;

static void on_sigint(int sig)
{
    (void)sig;
    got_sigint = 1;
}

/* The whole of f, NUL-terminated (free with td_free), or NULL when out of memory. */
static char *read_all(FILE *f, size_t *len)
{
    struct td_strbuf b;
    char chunk[65536];
    size_t r;
    td_strbuf_init(&b, 0);
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        td_strbuf_append(&b, chunk, r);
    }
    if (td_strbuf_failed(&b)) {
        td_strbuf_free(&b);
        return NULL;
    }
    return td_strbuf_take(&b, len);
}

/* `file:line:col: message`, then the line and a caret under the column. */
static void parse_error(const char *file, const char *src, int line0, const struct tdx_perr *pe)
{
    fprintf(stderr, "%s:%d:%d: %s\n", file, pe->line, pe->col, pe->msg);
    const char *p = src;
    for (int l = line0; l < pe->line && p != NULL; l++) {
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    if (p == NULL || pe->col < 1) {
        return;
    }
    const char *end = strchr(p, '\n');
    int len = end != NULL ? (int)(end - p) : (int)strlen(p);
    fprintf(stderr, "    %.*s\n    %*s^\n", len, p, pe->col - 1, "");
}


/* ---- scripts: code, with meta-command lines (':' in column 1) between the parts ---- */

struct part {
    struct tdx_prog prog;
    char *meta; /* a meta-command line instead of code, or NULL */
};

struct script {
    struct part *parts;
    int n;
};

static void script_free(struct script *s)
{
    for (int i = 0; i < s->n; i++) {
        tdx_prog_free(&s->parts[i].prog);
        free(s->parts[i].meta);
    }
    free(s->parts);
    s->parts = NULL;
    s->n = 0;
}

static int add_part(struct script *s, struct part *p)
{
    struct part *np = realloc(s->parts, (size_t)(s->n + 1) * sizeof *np);
    if (np == NULL) {
        return -1;
    }
    s->parts = np;
    s->parts[s->n++] = *p;
    return 0;
}

static int split_script(char *src, const char *file, struct script *out)
{
    char *p = src;
    int line = 1;
    while (*p != '\0') {
        /* code up to the next line that starts with ':' */
        char *q = p;
        int lines = 0;
        while (*q != '\0' && *q != ':') {
            char *nl = strchr(q, '\n');
            q = nl != NULL ? nl + 1 : q + strlen(q);
            lines++;
        }
        if (q > p) {
            char save = *q;
            struct part part = {0};
            struct tdx_perr pe;
            *q = '\0';
            int rc = tdx_parse(p, line, &part.prog, &pe);
            if (rc != 0) {
                parse_error(file, p, line, &pe);
            }
            *q = save;
            if (rc != 0 || add_part(out, &part) != 0) {
                tdx_prog_free(&part.prog);
                return -1;
            }
            line += lines;
        }
        if (*q == ':') {
            char *nl = strchr(q, '\n');
            size_t n = nl != NULL ? (size_t)(nl - q) : strlen(q);
            struct part part = {0};
            if ((part.meta = strndup(q, n)) == NULL || add_part(out, &part) != 0) {
                free(part.meta);
                return -1;
            }
            q += n + (nl != NULL);
            line++;
        }
        p = q;
    }
    return 0;
}

static int run_script(struct tdx_env *env, const struct script *s, const char *file,
                      const char *addr, bool keep_going)
{
    int status = TDX_OK;
    for (int i = 0; i < s->n; i++) {
        int rc;
        if (s->parts[i].meta != NULL) {
            const char *m = s->parts[i].meta;
            char cmd[64], arg[256];
            meta_words(m, cmd, sizeof cmd, arg, sizeof arg);
            if (is_quit(cmd)) {
                break;
            }
            if (strcmp(cmd, ":help") == 0) {
                rc = help(arg);
            } else {
                rc = tdx_sync(env);
                if (rc == 0) {
                    rc = tdx_meta(env, m, addr);
                }
            }
        } else {
            rc = tdx_run(env, &s->parts[i].prog, file);
        }
        if (rc == TDX_FATAL) {
            return TDX_FATAL;
        }
        if (rc != 0) {
            status = TDX_ERROR;
            if (!keep_going) {
                break;
            }
        }
    }
    return status;
}

/* ---- the REPL ---- */

struct repl {
    struct tdx_env *env;
    const char *addr;
    const char *prompt;
    History *hist;
    char histfile[4096];
};

static char *prompt_fn(EditLine *el)
{
    struct repl *r;
    el_get(el, EL_CLIENTDATA, &r);
    return (char *)r->prompt;
}

struct matches {
    char *names[512];
    int n;
};

static void add_match(const char *name, void *arg)
{
    struct matches *m = arg;
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->names[i], name) == 0) {
            return;
        }
    }
    if (m->n < 512) {
        m->names[m->n++] = (char *)name;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned char complete(EditLine *el, int ch)
{
    (void)ch;
    struct repl *r;
    el_get(el, EL_CLIENTDATA, &r);
    const LineInfo *li = el_line(el);
    const char *p = li->cursor;
    while (p > li->buffer && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
        p--;
    }
    bool dot = p > li->buffer && p[-1] == '.';
    char prefix[256], object[256];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(li->cursor - p), p);
    if (dot) {
        /* the name before the dot: a module offers its functions, anything else methods */
        const char *o = p - 1;
        while (o > li->buffer && (isalnum((unsigned char)o[-1]) || o[-1] == '_')) {
            o--;
        }
        snprintf(object, sizeof object, "%.*s", (int)(p - 1 - o), o);
    }
    struct matches m = {.n = 0};
    tdx_complete(r->env, prefix, dot ? object : NULL, add_match, &m);
    if (m.n == 0) {
        return CC_ERROR;
    }
    qsort(m.names, (size_t)m.n, sizeof m.names[0], cmp_str);
    size_t common = strlen(m.names[0]);
    for (int i = 1; i < m.n; i++) {
        size_t k = 0;
        while (k < common && m.names[i][k] == m.names[0][k]) {
            k++;
        }
        common = k;
    }
    size_t have = strlen(prefix);
    if (common > have) {
        char ins[256];
        snprintf(ins, sizeof ins, "%.*s", (int)(common - have), m.names[0] + have);
        el_insertstr(el, ins);
        return CC_REFRESH;
    }
    if (m.n == 1) {
        return CC_REFRESH;
    }
    fputc('\n', stdout);
    for (int i = 0; i < m.n; i++) {
        fprintf(stdout, "%-18s%s", m.names[i], (i % 4 == 3 || i == m.n - 1) ? "\n" : "");
    }
    fflush(stdout);
    return CC_REDISPLAY;
}

static bool blank(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '#') {
            return true;
        }
        if (!isspace((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

/* The first line opens a block (ends with ':' outside a comment). */
static bool opens_block(const char *buf)
{
    const char *end = strchr(buf, '\n');
    size_t n = end != NULL ? (size_t)(end - buf) : strlen(buf);
    const char *hash = memchr(buf, '#', n);
    if (hash != NULL) {
        n = (size_t)(hash - buf);
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1])) {
        n--;
    }
    return n > 0 && buf[n - 1] == ':';
}

static int repl(struct tdx_env *env, struct tensord *c, const char *addr, bool quiet)
{
    struct repl r = {.env = env, .addr = addr, .prompt = ">>> "};
    const char *home = getenv("HOME");
    if (home != NULL) {
        snprintf(r.histfile, sizeof r.histfile, "%s/.tensorctl_history", home);
    }
    HistEvent ev;
    r.hist = history_init();
    EditLine *el = el_init("tensorctl", stdin, stdout, stderr);
    if (r.hist == NULL || el == NULL) {
        fprintf(stderr, "tensorctl: cannot start line editing\n");
        if (r.hist != NULL) {
            history_end(r.hist);
        }
        return TDX_FATAL;
    }
    history(r.hist, &ev, H_SETSIZE, 1000);
    history(r.hist, &ev, H_SETUNIQUE, 1);
    if (r.histfile[0] != '\0') {
        history(r.hist, &ev, H_LOAD, r.histfile);
    }
    el_set(el, EL_CLIENTDATA, &r);
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_SIGNAL, 1);
    el_set(el, EL_PROMPT, prompt_fn);
    el_set(el, EL_HIST, history, r.hist);
    el_set(el, EL_ADDFN, "td-complete", "complete a name", complete);
    el_set(el, EL_BIND, "^I", "td-complete", NULL);
    el_source(el, NULL);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: the read returns and the line is dropped */

    if (!quiet) {
        /* the token's secret, shortened: "<node>.<hex>" or, from before scale-out, "<hex>" */
        const char *tok = tensord_session_token(c), *dot = strchr(tok, '.');
        const char *node = tensord_node(c);
        printf("%s at %s, %s%s%ssession %.8s%s\nType :help for help, Ctrl-D to quit.\n",
               tensord_server_version(c), tensord_address(c), node[0] ? "node " : "", node,
               node[0] ? ", " : "", dot != NULL ? dot + 1 : tok,
               tensord_resumed(c) ? " (resumed)" : "");
    }
    struct td_strbuf in; /* the statement typed so far */
    td_strbuf_init(&in, 0);
    int status = TDX_OK;
    for (;;) {
        int count = 0;
        got_sigint = 0;
        const char *line = el_gets(el, &count);
        if (line == NULL || count <= 0) {
            if (got_sigint) {
                /* Ctrl-C: drop what was typed, start afresh */
                fputs("\nKeyboardInterrupt\n", stdout);
                fflush(stdout);
                td_strbuf_reset(&in);
                r.prompt = ">>> ";
                continue;
            }
            fputc('\n', stdout);
            break;
        }
        size_t n = strlen(line);
        if (in.len == 0 && line[0] == ':') {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "%s", line);
            cmd[strcspn(cmd, "\n")] = '\0';
            history(r.hist, &ev, H_ENTER, cmd);
            if (r.histfile[0] != '\0') {
                history(r.hist, &ev, H_SAVE, r.histfile);
            }
            char word[64], arg[256];
            meta_words(cmd, word, sizeof word, arg, sizeof arg);
            if (is_quit(word)) {
                break;
            }
            if (strcmp(word, ":help") == 0) {
                help(arg);
                continue;
            }
            if (tdx_meta(env, cmd, addr) == TDX_FATAL) {
                status = TDX_FATAL;
                break;
            }
            continue;
        }
        if (in.len == 0 && blank(line)) {
            continue;
        }
        if (td_strbuf_append(&in, line, n) != 0) {
            fprintf(stderr, "tensorctl: out of memory\n");
            break;
        }
        const char *buf = td_strbuf_str(&in);
        if (!blank(line)) {
            char h[4096];
            snprintf(h, sizeof h, "%s", line);
            h[strcspn(h, "\n")] = '\0';
            history(r.hist, &ev, H_ENTER, h);
            if (r.histfile[0] != '\0') {
                history(r.hist, &ev, H_SAVE, r.histfile);
            }
        }
        /* A block runs when a blank line ends it; other input as soon as it is whole. */
        bool block = opens_block(buf);
        if (block && !blank(line)) {
            r.prompt = "... ";
            continue;
        }
        struct tdx_prog prog;
        struct tdx_perr pe;
        if (tdx_parse(buf, 1, &prog, &pe) != 0) {
            if (pe.incomplete && !block) {
                r.prompt = "... ";
                continue;
            }
            parse_error("<stdin>", buf, 1, &pe);
        } else {
            int rc = tdx_run(env, &prog, "<stdin>");
            tdx_prog_free(&prog);
            if (rc == TDX_FATAL) {
                status = TDX_FATAL;
                break;
            }
        }
        td_strbuf_reset(&in);
        r.prompt = ">>> ";
    }
    td_strbuf_free(&in);
    if (r.histfile[0] != '\0') {
        history(r.hist, &ev, H_SAVE, r.histfile);
    }
    el_end(el);
    history_end(r.hist);
    return status;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    const char *addr = getenv("TENSORD_ADDR");
    const char *token = getenv("TENSORD_TOKEN");
    const char *resume = NULL, *cmd = NULL, *script = NULL;
    bool json = false, keep_going = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        bool takes = strcmp(a, "--addr") == 0 || strcmp(a, "--token") == 0 ||
                     strcmp(a, "--resume") == 0 || strcmp(a, "-c") == 0;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        char name[32];
        if (eq != NULL) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            a = name;
            val = eq + 1;
            takes = true;
        } else if (takes) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tensorctl: %s needs a value\n%s", a, USAGE);
                return 2;
            }
            val = argv[++i];
        }
        if (strcmp(a, "--addr") == 0) {
            addr = val;
        } else if (strcmp(a, "--token") == 0) {
            token = val;
        } else if (strcmp(a, "--resume") == 0) {
            resume = val;
        } else if (strcmp(a, "-c") == 0) {
            cmd = val;
        } else if (strcmp(a, "--json") == 0 && !takes) {
            json = true;
        } else if (strcmp(a, "--keep-going") == 0 && !takes) {
            keep_going = true;
        } else if ((strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) && !takes) {
            quiet = true;
        } else if ((strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) && !takes) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0 && !takes) {
            printf("tensorctl %s\n", TD_VERSION);
            return 0;
        } else if ((a[0] != '-' || strcmp(a, "-") == 0) && script == NULL && !takes) {
            script = a;
        } else {
            fprintf(stderr, "tensorctl: unknown option or extra argument '%s'\n%s", argv[i], USAGE);
            return 2;
        }
    }
    if (cmd != NULL && script != NULL) {
        fprintf(stderr, "tensorctl: give -c or a script, not both\n");
        return 2;
    }
    if (addr == NULL || addr[0] == '\0') {
        addr = "127.0.0.1:7878";
    }
    /* Read the script before connecting, so a missing file costs no session. */
    char *src = NULL;
    size_t srclen = 0;
    const char *file = NULL;
    bool interactive = false;
    if (cmd != NULL) {
        src = td_strdup(cmd);
        file = "-c";
    } else if (script != NULL && strcmp(script, "-") != 0) {
        FILE *f = fopen(script, "r");
        if (f == NULL) {
            fprintf(stderr, "tensorctl: %s: %s\n", script, strerror(errno));
            return 2;
        }
        src = read_all(f, &srclen);
        fclose(f);
        file = script;
    } else if (script != NULL || !isatty(STDIN_FILENO)) {
        src = read_all(stdin, &srclen);
        file = "<stdin>";
    } else {
        interactive = true;
    }
    if (!interactive && src == NULL) {
        fprintf(stderr, "tensorctl: out of memory reading the script\n");
        return 2;
    }
    if (src != NULL && strlen(src) != srclen && cmd == NULL) {
        fprintf(stderr, "tensorctl: %s: the script contains a NUL byte\n", file);
        td_free(src);
        return 2;
    }

    /* A script is parsed whole before anything runs, as Python does. */
    struct script sc = {0};
    if (!interactive && split_script(src, file, &sc) != 0) {
        script_free(&sc);
        td_free(src);
        return 1;
    }
    struct tensord_options opts = {.auth_token = token != NULL && token[0] ? token : NULL,
                                   .client_name = "tensorctl/" TD_VERSION};
    opts.session_token = resume; /* checked by tensord_connect (TENSORD_E_USAGE) */
    struct tensord *c;
    struct tensord_error err;
    if (tensord_connect(&c, addr, &opts, &err) != 0) {
        fprintf(stderr, "tensorctl: %s%s\n", err.message,
                err.code != TENSORD_UNAUTHENTICATED ? ""
                : opts.auth_token == NULL
                    ? " (the server wants a token: --token or $TENSORD_TOKEN)"
                    : " (the token given by --token or $TENSORD_TOKEN was refused)");
        script_free(&sc);
        td_free(src);
        return 2;
    }
    struct tdx_config cfg = {.json = json,
                             .keep_going = keep_going,
                             .interactive = interactive,
                             .out = stdout,
                             .err = stderr};
    struct tdx_env *env = tdx_env_new(c, &cfg);
    int rc;
    if (env == NULL) {
        fprintf(stderr, "tensorctl: out of memory\n");
        rc = TDX_FATAL;
    } else if (interactive) {
        rc = repl(env, c, addr, quiet);
    } else {
        rc = run_script(env, &sc, file, addr, keep_going);
    }
    if (env != NULL && getenv("TENSORCTL_DEBUG") != NULL) {
        fprintf(stderr, "tensorctl: waits=%lu\n", tdx_waits(env));
    }
    tdx_env_free(env);
    tensord_disconnect(c);
    script_free(&sc);
    td_free(src);
    return rc == TDX_OK ? 0 : rc == TDX_ERROR ? 1 : 2;
}
