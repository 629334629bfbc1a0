# http_embed: turns a text file into a C source holding it as a byte array
# (NUL-terminated) and its length. Run with cmake -P:
#   -DINPUT=<file> -DOUTPUT=<file.c> -DSYMBOL=<name>
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from ${INPUT} by http_embed.cmake; do not edit. */\n"
  "const char ${SYMBOL}[] = {\n${bytes}0x00 };\n"
  "const unsigned long ${SYMBOL}_len = ${len}UL;\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
