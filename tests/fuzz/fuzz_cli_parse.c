/* tests/fuzz/fuzz_cli_parse.c — libFuzzer target for tensorctl's parser (client/cli/parse.c).
**
** The input is source text, as a script file or a REPL line would give it (NUL bytes end it,
** as they would for the C string the REPL passes). A parse that succeeds is dumped, statement by
** statement, and freed; one that fails must report a position inside the text and leave the
** program empty. Both the first line number of a file (1) and of a later REPL line are tried.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "parse.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_cli_parse: check failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_once(const char *src, int line0, int nlines)
{
    struct tdx_prog p;
    struct tdx_perr e;
    memset(&e, 0, sizeof e);
    if (tdx_parse(src, line0, &p, &e) != 0) {
        CHECK(p.n == 0);
        CHECK(memchr(e.msg, '\0', sizeof e.msg) != NULL);
        CHECK(e.line >= line0 && e.line <= line0 + nlines);
        CHECK(e.col >= 1);
        return;
    }
    CHECK(p.n >= 0);
    for (int i = 0; i < p.n; i++) {
        CHECK(p.stmts[i] != NULL);
        char *d = tdx_node_dump(p.stmts[i]);
        CHECK(d != NULL);
        td_free(d);
    }
    tdx_prog_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    CHECK(src != NULL);
    memcpy(src, data, size);
    src[size] = '\0';
    int nlines = 0;
    for (const char *p = src; *p != '\0'; p++) {
        nlines += *p == '\n';
    }
    parse_once(src, 1, nlines);
    parse_once(src, 41, nlines);
    free(src);
    return 0;
}
