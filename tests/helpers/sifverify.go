// sifverify: the reference integrity code (Debian's golang-github-sylabs-sif-dev,
// pkg/integrity, as Apptainer 1.1+ uses it) as an oracle for the signatures hutch writes.
// Usage: sifverify IMAGE.sif KEYRING (an armored or binary OpenPGP keyring); exit 0 when
// every object group verifies, 1 with the reference's error otherwise.
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/sylabs/sif/v2/pkg/integrity"
	"github.com/sylabs/sif/v2/pkg/sif"
)

func main() {
	kb, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyring:", err)
		os.Exit(2)
	}
	kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(kb))
	if err != nil {
		kr, err = openpgp.ReadKeyRing(bytes.NewReader(kb))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyring:", err)
		os.Exit(2)
	}
	f, err := sif.LoadContainerFromPath(os.Args[1], sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	defer f.UnloadContainer()
	v, err := integrity.NewVerifier(f, integrity.OptVerifyWithKeyRing(kr), integrity.OptVerifyCallback(func(r integrity.VerifyResult) bool {
		for _, od := range r.Verified() {
			fmt.Printf("signature %d verified object %d\n", r.Signature().ID(), od.ID())
		}
		return false
	}))
	if err == nil {
		err = v.Verify()
	}
	if err != nil {
		fmt.Println("verify:", err)
		os.Exit(1)
	}
	fmt.Println("verified")
}
