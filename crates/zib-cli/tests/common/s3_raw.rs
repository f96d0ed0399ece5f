//! S3 multipart requests sent by hand (the tenant's Bearer header, no SDK), for tests
//! that look at the server between the steps of an upload.

pub struct RawS3 {
    pub http: reqwest::blocking::Client,
    pub bearer: String,
    /// `{api_url}/s3/{bucket}`.
    pub base: String,
}

impl RawS3 {
    pub fn new(api_url: &str, bearer: String, bucket: &str) -> RawS3 {
        RawS3 {
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .unwrap(),
            bearer,
            base: format!("{api_url}/s3/{bucket}"),
        }
    }

    /// CreateMultipartUpload; its upload id.
    pub fn create(&self, key: &str) -> String {
        let text = self
            .http
            .post(format!("{}/{key}?uploads", self.base))
            .header("Authorization", &self.bearer)
            .send()
            .unwrap()
            .text()
            .unwrap();
        between(&text, "<UploadId>", "</UploadId>")
    }

    /// UploadPart; its ETag (quoted).
    pub fn part(&self, key: &str, upload: &str, n: u32, body: &[u8]) -> String {
        let r = self
            .http
            .put(format!(
                "{}/{key}?partNumber={n}&uploadId={upload}",
                self.base
            ))
            .header("Authorization", &self.bearer)
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "part {n}");
        r.headers()["etag"].to_str().unwrap().to_string()
    }

    /// CompleteMultipartUpload of `parts` (number, ETag); status and body.
    pub fn complete(&self, key: &str, upload: &str, parts: &[(u32, &str)]) -> (u16, String) {
        let listed: String = parts
            .iter()
            .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
            .collect();
        let r = self
            .http
            .post(format!("{}/{key}?uploadId={upload}", self.base))
            .header("Authorization", &self.bearer)
            .body(format!(
                "<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>"
            ))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// HeadObject's `x-zib-file-id`: the file the key's object is.
    pub fn file_id(&self, key: &str) -> String {
        let head = self
            .http
            .head(format!("{}/{key}", self.base))
            .header("Authorization", &self.bearer)
            .send()
            .unwrap();
        head.headers()["x-zib-file-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// `data` uploaded in parts cut at `cuts`, completed; the object's file id.
    pub fn upload_in_parts(&self, key: &str, data: &[u8], cuts: &[usize]) -> String {
        let upload = self.create(key);
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        let etags: Vec<String> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| self.part(key, &upload, i as u32 + 1, &data[w[0]..w[1]]))
            .collect();
        let listed: Vec<(u32, &str)> = etags
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32 + 1, e.as_str()))
            .collect();
        let (status, text) = self.complete(key, &upload, &listed);
        assert_eq!(status, 200, "{text}");
        self.file_id(key)
    }
}

pub fn between(text: &str, open: &str, close: &str) -> String {
    text.split(open)
        .nth(1)
        .and_then(|rest| rest.split(close).next())
        .unwrap_or_else(|| panic!("no {open} in {text}"))
        .to_string()
}
