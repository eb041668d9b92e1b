/* tools/layers/no-protobuf/proto/tensord.pb-c.h — poison.
** This directory comes first on the include path of every layer that must not use
** the generated protobuf code (Makefile, "Layers"), so an include of this name stops the build
** there. */
#error "layering: this layer must not include tensord.pb-c.h (server/rpc, client/c only)"
