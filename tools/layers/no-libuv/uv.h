/* tools/layers/no-libuv/uv.h — poison.
** This directory comes first on the include path of every layer that must not use
** libuv (Makefile, "Layers"), so an include of this name stops the build there. */
#error "layering: this layer must not include uv.h (libuv is server/net's; DESIGN.md)"
