// sifcheck: the reference SIF implementation (Debian's golang-github-sylabs-sif-dev) as an
// oracle. Loads a SIF file and prints its header facts and each object, one per line, so a
// test can compare with what hutch wrote or reads.
package main

import (
	"fmt"
	"os"

	"github.com/sylabs/sif/pkg/sif"
)

func main() {
	f, err := sif.LoadContainerFromPath(os.Args[1], sif.OptLoadWithFlag(os.O_RDONLY))
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	defer f.UnloadContainer()
	fmt.Printf("launch=%q version=%s arch=%s objects=%d\n", f.LaunchScript(), f.Version(), f.PrimaryArch(), f.DescriptorsTotal()-f.DescriptorsFree())
	f.WithDescriptors(func(d sif.Descriptor) bool {
		line := fmt.Sprintf("id=%d type=%s group=%d offset=%d size=%d", d.ID(), d.DataType(), d.GroupID(), d.Offset(), d.Size())
		if d.DataType() == sif.DataPartition {
			fs, pt, arch, _ := d.PartitionMetadata()
			line += fmt.Sprintf(" fs=%s part=%s arch=%s", fs, pt, arch)
		}
		fmt.Println(line)
		return false
	})
	d, err := f.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		fmt.Fprintln(os.Stderr, "primary:", err)
		os.Exit(2)
	}
	fmt.Printf("primary=%d\n", d.ID())
}
