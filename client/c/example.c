/* A first session with libtensord: two 2x2 tensors, elementwise and matrix products. */
#include <stdio.h>
#include <tensord.h>

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:7878";
    struct tensord *c;
    struct tensord_error err;
    if (tensord_connect(&c, addr, NULL, &err) != 0) {
        fprintf(stderr, "connect: %s\n", err.message);
        return 1;
    }
    const int64_t shape[] = {2, 2};
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8};
    uint64_t ha = tensord_new_handle(c), hb = tensord_new_handle(c);
    uint64_t prod = tensord_new_handle(c), mm = tensord_new_handle(c);
    struct tensord_operand ab[] = {tensord_h(ha), tensord_h(hb)};
    if (tensord_create(c, ha, TENSORD_FLOAT32, shape, 2, a, sizeof a, &err) != 0 ||
        tensord_create(c, hb, TENSORD_FLOAT32, shape, 2, b, sizeof b, &err) != 0 ||
        tensord_op(c, "mul", prod, ab, 2, false, NULL, &err) != 0 ||  /* a * b */
        tensord_op(c, "matmul", mm, ab, 2, false, NULL, &err) != 0) { /* a @ b */
        fprintf(stderr, "error: %s\n", err.message);
        tensord_disconnect(c);
        return 1;
    }
    float out[4];
    char text[256];
    tensord_get(c, mm, NULL, out, sizeof out, &err);
    printf("a @ b = [[%g, %g], [%g, %g]]\n", out[0], out[1], out[2], out[3]);
    tensord_format(c, prod, text, sizeof text, &err); /* torch's printed text */
    printf("a * b =\n%s\n", text);
    uint64_t all[] = {ha, hb, prod, mm};
    tensord_free(c, all, 4, &err);
    tensord_close_session(c, &err);
    tensord_disconnect(c);
    return 0;
}
