package stash

import (
	"os"
	"path/filepath"
	"testing"
)

// sampleConfig is a config.yml as Stash writes it, with comments an owner
// added by hand and the odd indentation hand edits leave behind.
const sampleConfig = `# Stash on the NAS. Edit only while Stash is stopped.
api_key: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1aWQiOiJhZG1pbiIsInN1YiI6IkFQSUtleSIsImlhdCI6MTcxMjM0NTY3OH0.3q2-7wXnJmZ0cVbE1wQwq8m7lS1yHc2yQm7mB0bL1xQ
blobs_path: /root/.stash/blobs
blobs_storage: FILESYSTEM
cache: /cache
calculate_md5: false
database: /root/.stash/stash-go.sqlite   # on the SSD
dlna:
  default_whitelist: []
exclude:
    - '.*\.part$'
    - "(?i)/sample/"
generated: /generated
host: 0.0.0.0
jwt_secret_key: 9c1f0a6e2b7d4e58a3f1c0d9b8e7f6a5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9
menu_items:
  - scenes
  - images
  - performers
  - tags
metadata: /metadata
nobrowser: true
parallel_tasks: 2
password: $2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy
port: 9999

# Scrapers from the community index.
scrapers:
  package_sources:
    - localpath: community
      name: Community
      url: https://stashapp.github.io/CommunityScrapers/stable/index.yml
session_store_key: 5e1c7a2d9f3b4c8e6a0d2f4b6c8e0a2d4f6b8c0e2a4d6f8b0c2e4a6d8f0b2c4e
stash:
  - excludeimage: false
    excludevideo: false
    path: /data/
  - excludeimage: true
    excludevideo: false
    path: /data2/   # the USB disk
ui:
  frontPageContent:
    - __typename: CustomFilter
      direction: DESC
      mode: SCENES
      sortBy: date
  taskDefaults:
    scan:
      scanGenerateCovers: true
username: admin
video_file_naming_algorithm: OSHASH
write_image_thumbnails: true
`

// writeConfig writes a config.yml with the given content and mode into a
// fresh temporary directory and returns its path.
func writeConfig(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
