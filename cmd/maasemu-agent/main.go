// Command maasemu-agent is the installer inside the test ephemeral and the first-boot probe
// of the test images.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "maasemu-agent: not yet implemented")
	os.Exit(1)
}
