/* The program the layering link check (tests/meson.build) links each module into: it only
 * has to link, so it does nothing. */
int main(void)
{
        return 0;
}
