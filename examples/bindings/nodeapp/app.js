// The quickstart consumer: the sidecar posts each Kafka message of the
// `sample-topic` input binding to POST /sample-topic.
const express = require('express');
const bodyParser = require('body-parser');

const app = express();
app.use(bodyParser.json());

const port = process.env.APP_PORT || 3000;

app.post('/sample-topic', (req, res) => {
  console.log('Hello from Kafka!');
  console.log(req.body);
  res.status(200).send();
});

app.listen(port, () => console.log(`Kafka consumer app listening on port ${port}!`));
