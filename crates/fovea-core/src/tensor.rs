//! A dense, contiguous, row-major f32 tensor: the currency between protocols,
//! preprocessing and backends. fovea's models take and return f32 (int8 QDQ
//! models included), so one element type keeps every path copy-free.

/// Shape and data disagree, or a reshape asks for the wrong element count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor shape {shape:?} needs {expected} elements, got {actual}")]
pub struct TensorError {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub actual: usize,
}

/// Row-major f32 tensor. The invariant `data.len() == shape.iter().product()`
/// holds for every value built through [`Tensor::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, checking that the data fills the shape exactly.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        let expected = element_count(&shape);
        if expected != data.len() {
            return Err(TensorError {
                shape,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A zero-filled tensor, for buffers that are written in place.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let data = vec![0.0; element_count(&shape)];
        Self { shape, data }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (self.shape, self.data)
    }

    /// Size of the leading (batch) dimension; 1 for a scalar.
    pub fn batch_size(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Number of elements in one item of the leading dimension.
    pub fn item_len(&self) -> usize {
        element_count(self.shape.get(1..).unwrap_or(&[]))
    }

    /// The `index`-th item of the leading dimension, if it exists.
    pub fn item(&self, index: usize) -> Option<&[f32]> {
        let len = self.item_len();
        self.data.get(index * len..(index + 1) * len)
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self, TensorError> {
        Self::new(shape, self.data)
    }

    /// Concatenates tensors of equal trailing shape along the leading dimension.
    pub fn concat(parts: &[Tensor]) -> Result<Self, TensorError> {
        let Some(first) = parts.first() else {
            return Ok(Self {
                shape: vec![0],
                data: Vec::new(),
            });
        };
        let tail = first.shape.get(1..).unwrap_or(&[]).to_vec();
        let mut batch = 0;
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for part in parts {
            if part.shape.get(1..).unwrap_or(&[]) != tail.as_slice() {
                let mut shape = vec![part.batch_size()];
                shape.extend(&tail);
                return Err(TensorError {
                    expected: element_count(&shape),
                    actual: part.data.len(),
                    shape,
                });
            }
            batch += part.batch_size();
            data.extend_from_slice(&part.data);
        }
        let mut shape = vec![batch];
        shape.extend(tail);
        Self::new(shape, data)
    }
}

/// Product of the dimensions (1 for a scalar shape).
pub fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_data_that_does_not_fill_the_shape() {
        let err = Tensor::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!((err.expected, err.actual), (6, 5));
    }

    #[test]
    fn concat_stacks_along_the_batch_dimension() {
        let a = Tensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::new(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]).unwrap();
        let c = Tensor::concat(&[a, b]).unwrap();
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(c.item(2), Some(&[5.0, 6.0][..]));
        assert_eq!(c.item(3), None);
    }

    #[test]
    fn concat_refuses_mismatched_items() {
        let a = Tensor::new(vec![1, 2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::new(vec![1, 3], vec![3.0, 4.0, 5.0]).unwrap();
        assert!(Tensor::concat(&[a, b]).is_err());
    }
}
