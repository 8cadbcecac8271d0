/* <pomelo/nats.h> compiles alone as strict C99 (tests/meson.build, header_nats_c99); the
 * generated alone_nats_main.c holds the translation unit that includes it.
 * SPDX-License-Identifier: MIT
 */
int header_alone_nats(void);

int main(void) {
  return header_alone_nats();
}
