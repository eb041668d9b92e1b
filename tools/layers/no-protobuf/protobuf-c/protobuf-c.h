/* tools/layers/no-protobuf/protobuf-c/protobuf-c.h — poison.
** This directory comes first on the include path of every layer that must not use
** protobuf-c (Makefile, "Layers"), so an include of this name stops the build there. */
#error "layering: this layer must not include protobuf-c (server/rpc, client/c only)"
