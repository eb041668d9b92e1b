/* ops.c — tensorctl's op table (generated from server/core/ops.def) and what torch's API says
** about each op's name.
**
** Everything about an op's call — its operands, torch's parameters, their OpArgs fields, its
** flags — comes from the generated table. What ops.def does not record is where torch puts a
** name: most ops are both torch.name and Tensor.name, and that is the default, so a new row
** needs nothing here. The exceptions below are torch's namespaces, not op contracts.
*/
#include "ops.h"

#include <string.h>

#include "cli_ops.h"

/* How torch spells an op whose name is not both a torch function and a Tensor method. */
enum torch_form {
    FORM_FUNCTION = 1,     /* torch.name / torch.nn.functional.name only (x.eye() fails) */
    FORM_INPLACE_METHOD,   /* a method only as x.name_() (there is no x.fill(1)) */
    FORM_NONE,             /* the wire's alone: mT is the attribute x.mT, slice is x[a:b] */
};

static const struct {
    const char *name;
    enum torch_form form;
} TORCH_FORMS[] = {
    {"gelu", FORM_FUNCTION}, {"cat", FORM_FUNCTION}, {"stack", FORM_FUNCTION},
    {"mse_loss", FORM_FUNCTION}, {"cross_entropy", FORM_FUNCTION}, {"linear", FORM_FUNCTION},
    {"empty", FORM_FUNCTION}, {"randint", FORM_FUNCTION}, {"linspace", FORM_FUNCTION},
    {"eye", FORM_FUNCTION}, {"zeros_like", FORM_FUNCTION}, {"ones_like", FORM_FUNCTION},
    {"empty_like", FORM_FUNCTION}, {"full_like", FORM_FUNCTION}, {"rand_like", FORM_FUNCTION},
    {"randn_like", FORM_FUNCTION},
    {"fill", FORM_INPLACE_METHOD}, {"zero", FORM_INPLACE_METHOD}, {"copy", FORM_INPLACE_METHOD},
    {"uniform", FORM_INPLACE_METHOD}, {"normal", FORM_INPLACE_METHOD},
    {"mT", FORM_NONE}, {"slice", FORM_NONE},
};

static int torch_form(const char *name)
{
    for (size_t i = 0; i < sizeof TORCH_FORMS / sizeof TORCH_FORMS[0]; i++) {
        if (strcmp(TORCH_FORMS[i].name, name) == 0) {
            return (int)TORCH_FORMS[i].form;
        }
    }
    return 0;
}

const struct tdx_opdef *tdx_op_find(const char *name)
{
    for (size_t i = 0; i < sizeof TDX_OPS / sizeof TDX_OPS[0]; i++) {
        if (strcmp(TDX_OPS[i].name, name) == 0) {
            return &TDX_OPS[i];
        }
    }
    return NULL;
}

const struct tdx_opdef *tdx_op_at(size_t i)
{
    return i < sizeof TDX_OPS / sizeof TDX_OPS[0] ? &TDX_OPS[i] : NULL;
}

const struct tdx_param *tdx_op_param(const struct tdx_opdef *op, int i)
{
    return &TDX_PARAMS[op->param0 + i];
}

const struct tdx_param *tdx_op_param_named(const struct tdx_opdef *op, const char *name)
{
    for (int i = 0; i < op->nparams; i++) {
        if (strcmp(TDX_PARAMS[op->param0 + i].name, name) == 0) {
            return &TDX_PARAMS[op->param0 + i];
        }
    }
    return NULL;
}

bool tdx_op_nodiff(const struct tdx_opdef *op)
{
    return (op->flags & TDX_OPF_NODIFF) != 0;
}

bool tdx_op_is_function(const char *name)
{
    return tdx_op_find(name) != NULL && torch_form(name) != FORM_NONE;
}

bool tdx_op_is_method(const char *name, bool inplace)
{
    const struct tdx_opdef *op = tdx_op_find(name);
    int f = torch_form(name);
    if (op == NULL || f == FORM_NONE || f == FORM_FUNCTION) {
        return false;
    }
    return inplace ? op->inplace != NULL : f != FORM_INPLACE_METHOD;
}

static void help_word(FILE *out, int width, int *col, const char *name, const char *suffix)
{
    int n = (int)(strlen(name) + strlen(suffix));
    if (*col > 0 && *col + 1 + n > width) {
        fputc('\n', out);
        *col = 0;
    }
    *col += fprintf(out, "%s%s%s", *col > 0 ? " " : "  ", name, suffix);
}

void tdx_op_help(FILE *out, int width)
{
    int col = 0;
    const struct tdx_opdef *op;
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        int f = torch_form(op->name);
        if (f != FORM_NONE && f != FORM_INPLACE_METHOD) {
            help_word(out, width, &col, op->name, "");
        }
    }
    fputc('\n', out);
    col = 0;
    for (size_t i = 0; (op = tdx_op_at(i)) != NULL; i++) {
        if (torch_form(op->name) == FORM_INPLACE_METHOD && op->inplace != NULL) {
            help_word(out, width, &col, op->inplace, "");
        }
    }
    fputc('\n', out);
}
